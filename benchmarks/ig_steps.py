"""IG quadrature against the paper's 100 steps: every rule at several step counts, per checkpoint.

For each checkpoint (LABEL=MODEL_DIR, or `shape:HUB_ID` for random weights of a real shape with the
world's tokenizer) and each rule (right, left, midpoint, gauss) at m steps: the completeness error
(|input node's score sum - metric change| / |change|), how many of the reference's top-k edges the
m-step top-k recovers, the head-set Jaccard of the two circuits, and the attribution time. The
reference is the left rule at 100 steps (hannamw/EAP-IG's sums, the paper's count). `auto` rows:
what `steps: auto` chose for the default rule and what it cost. Prints one markdown table.

    .venv/bin/python benchmarks/ig_steps.py base=DIR sft=DIR grpo=DIR shape:Qwen/Qwen2.5-0.5B \
        --pairs PAIRS.jsonl [--steps 1 2 3 5 8 16 32] [--top-k 30] [--n-pairs 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparks.circuits.attribution import attribute  # noqa: E402
from sparks.circuits.batches import encode_pairs, load_pairs  # noqa: E402
from sparks.circuits.graph import find_circuit  # noqa: E402
from sparks.circuits.quadrature import IG_SCHEDULES  # noqa: E402
from sparks.circuits.spec import SnapshotSpec  # noqa: E402
from sparks.circuits.steps import attribute_auto  # noqa: E402
from sparks.models.loading import load_model, load_tokenizer  # noqa: E402

REFERENCE = ("left", 100)


def _model(spec: str, world_model: str):
    """A checkpoint, or random weights of a real architecture's shape (world tokenizer's vocab)."""
    if not spec.startswith("shape:"):
        return load_model(spec), load_tokenizer(spec)
    from sparks.models.shapes import random_model

    tok = load_tokenizer(world_model)
    model = random_model(spec.removeprefix("shape:"), seed=0, vocab_size=len(tok))
    return model.eval(), tok


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench(label: str, model, batches, args, rows: list[dict]) -> None:
    """Every rule at every step count on one checkpoint, against the left rule at 100 steps."""
    kw = dict(metric=args.metric)
    ref, ref_s = _timed(attribute, model, batches, steps=100, schedule="left", **kw)
    ref_c = find_circuit(ref.graph, ref.scores, top_k=args.top_k)
    ref_heads = set(ref_c.heads)

    def row(rule, m, attr, secs):
        c = find_circuit(attr.graph, attr.scores, top_k=args.top_k)
        got = int((c.edges & ref_c.edges).sum()) / max(1, int(ref_c.edges.sum()))
        heads = set(c.heads)
        jac = len(heads & ref_heads) / max(1, len(heads | ref_heads))
        r = dict(checkpoint=label, rule=rule, m=m, completeness=attr.completeness_error,
                 recovered=got, jaccard=jac, seconds=secs)  # fmt: skip
        rows.append(r)
        print(
            f"| {label} | {rule} | {m} | {r['completeness']:.1%} | {got:.0%} | {jac:.2f} "
            f"| {secs:.2f} |",
            flush=True,
        )

    row("left (reference)", 100, ref, ref_s)
    for rule in args.rules:
        for m in args.steps:
            attr, secs = _timed(attribute, model, batches, steps=m, schedule=rule, **kw)
            row(rule, m, attr, secs)
    for rule in ("gauss", "midpoint"):
        spec = SnapshotSpec(schedule=rule, top_k=args.top_k, metric=args.metric)
        (attr, choice), secs = _timed(attribute_auto, model, batches, spec)
        tried = "/".join(map(str, choice.tried))
        capped = ", CAPPED" if choice.capped else ""
        ended = ", ".join(f"{n} at {k}" for k, n in choice.pairs_at.items())
        per_pair = choice.passes / max(1, len(choice.pair_steps))
        row(
            f"{rule} auto (tried {tried}; pairs ended: {ended}; {per_pair:.1f} points per pair"
            f"{capped})",
            choice.steps,
            attr,
            secs,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", metavar="LABEL=MODEL_DIR|shape:HUB_ID")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--world-model", default=None, help="tokenizer for shape: models")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 5, 8, 16, 32])
    ap.add_argument("--top-k", type=int, default=30)
    ap.add_argument("--n-pairs", type=int, default=16)
    ap.add_argument("--metric", default="logit_diff")
    ap.add_argument("--rules", nargs="*", default=list(IG_SCHEDULES), help="fixed-m rules to run")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    print(
        "| checkpoint | rule | m | completeness error | top-k recovered | head Jaccard | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    for item in args.checkpoints:
        label, _, where = item.partition("=") if "=" in item else (item, "", item)
        model, tok = _model(where, args.world_model)
        pairs = load_pairs(args.pairs)[: args.n_pairs]
        bench(label, model, encode_pairs(tok, pairs, batch_size=args.n_pairs), args, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
