"""How many EAP-IG steps a checkpoint needs: circuits at several step counts against a reference.

For each step count m: the snapshot time, the completeness error (how far the input node's edge
scores are from the real metric change), and how much of the reference circuit (the most steps)
the m-step circuit recovers: top-k edge overlap, head-set Jaccard, Spearman rank correlation of
the reference's top 100 edges. Trained models are often less linear along the IG path than
untrained ones and may need more steps than the default 5.

    .venv/bin/python benchmarks/ig_steps.py MODEL_DIR --pairs PAIRS.jsonl [--steps 1 5 10 20 50]
        [--top-k 30] [--n-pairs 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparks.circuits.pairs import encode_pairs, load_pairs  # noqa: E402
from sparks.circuits.snapshot import build_snapshot  # noqa: E402
from sparks.models import load_model, load_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    ap.add_argument("--top-k", type=int, default=30)
    ap.add_argument("--n-pairs", type=int, default=16)
    args = ap.parse_args()
    model = load_model(args.model)
    tok = load_tokenizer(args.model)
    batches = encode_pairs(tok, load_pairs(args.pairs)[: args.n_pairs], batch_size=args.n_pairs)
    snaps = {
        m: build_snapshot(model, batches, steps=m, top_k=args.top_k, n_boot=20)
        for m in sorted(args.steps)
    }
    ref = snaps[max(snaps)]
    valid = ref.graph.valid
    top_ref = ref.edge_scores.abs().masked_fill(~valid, -1).flatten().topk(100).indices
    print(f"model {args.model}: {args.n_pairs} pairs, top_k {args.top_k}, reference m={max(snaps)}")
    print(
        f"{'m':>4} {'seconds':>8} {'completeness err':>17} {'top-k overlap':>14} "
        f"{'head Jaccard':>13} {'Spearman top100':>16}"
    )
    ref_heads = set(ref.heads)
    for m, s in snaps.items():
        overlap = int((s.circuit.edges & ref.circuit.edges).sum()) / max(
            1, int(ref.circuit.edges.sum())
        )
        heads = set(s.heads)
        jac = len(heads & ref_heads) / max(1, len(heads | ref_heads))
        rho = spearmanr(
            s.edge_scores.flatten()[top_ref].numpy(), ref.edge_scores.flatten()[top_ref].numpy()
        ).statistic
        print(
            f"{m:4d} {s.seconds:8.2f} {s.completeness_error:16.1%} {overlap:14.0%} "
            f"{jac:13.2f} {rho:16.3f}"
        )


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
