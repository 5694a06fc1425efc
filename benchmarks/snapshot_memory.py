"""Peak memory and time of one circuit snapshot at real model shapes, beside its floor.

For each shape, a random-initialised model built from the architecture's config (no download;
`sparks.models.shapes`), random token pairs of the given length, and in separate processes (so each
peak is its own):
- floor: what any m-step EAP-IG must do on the same batch, as training does it: 2 forwards
  (clean, corrupted) + m x (forward + backward with parameter gradients, an LM loss);
- snapshot: `build_snapshot` (attribution, circuit, stability, faithfulness) at default
  settings: passes sized from the free memory.
Peak memory: the process's peak RSS on a CPU, torch's peak allocation on a GPU. Ratios are
snapshot / floor, measured in one run.

    .venv/bin/python benchmarks/snapshot_memory.py [--shapes Qwen/Qwen2.5-0.5B ...] \
        [--pairs 8] [--tokens 88] [--steps 5] [--dtype float32] [--tokens-per-pass N]

Defaults: Qwen2.5-0.5B and Qwen2.5-Math-1.5B in float32 on a CPU; add Qwen/Qwen3-8B with
--dtype bfloat16 --pairs 16 --tokens 512 on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _batches(model, pairs: int, tokens: int, seed: int = 0):
    import torch

    from sparks.circuits.batches import PairBatch

    g = torch.Generator().manual_seed(seed)
    V = model.config.vocab_size
    clean = torch.randint(0, V, (pairs, tokens), generator=g)
    corrupt = clean.clone()
    where = torch.rand(pairs, tokens, generator=g) < 0.1  # a tenth of the tokens differ
    corrupt[where] = torch.randint(0, V, (int(where.sum()),), generator=g)
    answers = torch.randint(0, V, (2, pairs), generator=g)
    answers[1] = torch.where(answers[1] == answers[0], (answers[0] + 1) % V, answers[1])
    last = torch.full((pairs,), tokens - 1)
    return [
        PairBatch(
            clean,
            corrupt,
            torch.ones(pairs, tokens, dtype=torch.long),
            last,
            answers[0],
            answers[1],
            last[:, None],
            torch.ones(pairs, 1),
        )
    ]


def _peak_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _floor(model, b, steps: int) -> None:
    import torch

    with torch.no_grad():
        for ids in (b.clean_ids, b.corrupt_ids):
            model(input_ids=ids, attention_mask=b.mask, use_cache=False)
    for _ in range(steps):
        out = model(
            input_ids=b.clean_ids, attention_mask=b.mask, labels=b.clean_ids, use_cache=False
        )
        out.loss.backward()
    model.zero_grad(set_to_none=True)


def one(args) -> dict:
    """Run one measurement in this process and return its row."""
    import torch

    from sparks.circuits.snapshot import build_snapshot
    from sparks.circuits.spec import SnapshotSpec
    from sparks.models.shapes import random_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    model = random_model(args.shape, dtype=args.dtype, **overrides).to(device)
    (b,) = [x.to(device) for x in _batches(model, args.pairs, args.tokens)]
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    if args.what == "floor":
        _floor(model, b, args.steps)
        extra = {}
    else:
        spec = SnapshotSpec(steps=args.steps, top_k=200, tokens_per_pass=args.tokens_per_pass)
        snap = build_snapshot(model, [b], spec)
        extra = {
            "finite": bool(torch.isfinite(snap.edge_scores).all()),
            "heads": len(snap.heads),
            "edges": int(snap.graph.valid.sum()),
        }
    if device == "cuda":
        torch.cuda.synchronize()
    return {
        "seconds": time.perf_counter() - t,
        "peak_gb": _peak_gb(device),
        "device": device,
    } | extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-Math-1.5B"])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=88)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--layers", type=int, default=None, help="shrink the depth (quick checks)")
    ap.add_argument("--tokens-per-pass", type=int, default=None)
    ap.add_argument("--one", choices=("floor", "snapshot"), help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        args.what = args.one
        print(json.dumps(one(args)))
        return
    common = ["--pairs", str(args.pairs), "--tokens", str(args.tokens), "--steps", str(args.steps)]
    common += ["--dtype", args.dtype] + (["--layers", str(args.layers)] if args.layers else [])
    if args.tokens_per_pass:
        common += ["--tokens-per-pass", str(args.tokens_per_pass)]
    print(
        f"{'shape':28} {'dtype':8} {'batch':>9} {'floor s':>8} {'snap s':>8} {'time x':>7} "
        f"{'floor GB':>9} {'snap GB':>8} {'mem x':>6}  finite"
    )
    for shape in args.shapes:
        rows = {}
        for what in ("floor", "snapshot"):
            cmd = [sys.executable, __file__, "--one", what, "--shape", shape, *common]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{shape} {what} failed:\n{done.stderr[-2000:]}")
            rows[what] = json.loads(done.stdout.strip().splitlines()[-1])
        f, s = rows["floor"], rows["snapshot"]
        print(
            f"{shape:28} {args.dtype:8} {f'{args.pairs}x{args.tokens}':>9} {f['seconds']:8.1f} "
            f"{s['seconds']:8.1f} {s['seconds'] / f['seconds']:7.2f} {f['peak_gb']:9.2f} "
            f"{s['peak_gb']:8.2f} {s['peak_gb'] / f['peak_gb']:6.2f}  {s['finite']} "
            f"({s['edges']} edges, {s['heads']} heads, {f['device']})",
            flush=True,
        )


if __name__ == "__main__":
    main()
