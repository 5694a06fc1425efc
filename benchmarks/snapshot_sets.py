"""What a run's pair sets cost per save: `steps: auto` as it was (every position of every pair in
one padded batch, all pairs raised together) against as it is (the pairs' shared prefix run once,
pairs of similar length together, each pair raised only while it is over its share of the
tolerance), on the same checkpoints, pairs and settings, timed one after the other in one run.
What is timed is `attribute_auto`, the part that changed (a snapshot adds its circuit, bootstrap
stability and faithfulness, the same both ways).

    .venv/bin/python benchmarks/snapshot_sets.py runs/demo [--n-pairs 16] [--top-k 50]

Reads the run's pair sets (`pairs.jsonl` is the primary set "all", `pairs-NAME.jsonl` the others)
and every save it snapshotted (the base from `config.json`'s model, then each stage's
checkpoints). Prints one row per save and set (seconds before / after, the IG steps each got and
the completeness error reached) and the totals per set with their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparks.circuits.batches import encode_pairs, load_pairs  # noqa: E402
from sparks.circuits.spec import SnapshotSpec  # noqa: E402
from sparks.circuits.steps import attribute_auto, steps_text  # noqa: E402
from sparks.models.loading import load_model, load_tokenizer  # noqa: E402


def saves(run: Path) -> list[tuple[str, Path]]:
    """(label, model dir) of every save the run snapshotted, the base first."""
    out = []
    base = run / "base" / "circuit" / "snapshot.json"
    if base.is_file():
        from sparks.config import WORLD, WorldSettings
        from sparks.world.build import world_for

        cfg = json.loads((run / "config.json").read_text())
        model = cfg["model"]["path"]
        world = WorldSettings(**cfg["world"])
        out.append(("base", world_for(world).model_dir if model == WORLD else Path(model)))
    for stage in sorted(run.glob("stage*-*")):
        ckpts = sorted(stage.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        out += [(f"{stage.name}/{c.name}", c) for c in ckpts]
    return out


def sets(run: Path) -> dict[str, Path]:
    found = {"all": run / "pairs.jsonl"} if (run / "pairs.jsonl").is_file() else {}
    for f in sorted(run.glob("pairs-*.jsonl")):
        found[f.stem.removeprefix("pairs-")] = f
    return found


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--n-pairs", type=int, default=16)
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    spec = SnapshotSpec(steps="auto", top_k=args.top_k)
    pair_sets = sets(args.run)
    totals: dict[str, list[float]] = {name: [0.0, 0.0] for name in pair_sets}
    rows = []
    print("| save | set | before: s, IG steps, error | after: s, IG steps, error | ratio |")
    print("|---|---|---|---|---|")
    for label, where in saves(args.run):
        model, tok = load_model(where).eval(), load_tokenizer(where)
        for name, path in pair_sets.items():
            batches = encode_pairs(tok, load_pairs(path)[: args.n_pairs], batch_size=args.n_pairs)
            (_, old), old_s = _timed(
                attribute_auto, model, batches, spec, by_pair=False, compact=False
            )
            (_, new), new_s = _timed(attribute_auto, model, batches, spec)
            totals[name][0] += old_s
            totals[name][1] += new_s
            rows.append(dict(save=label, set=name, before_s=old_s, before_steps=old.steps,
                             before_error=old.completeness_error, after_s=new_s,
                             after_steps=new.pairs_at, after_error=new.completeness_error))  # fmt: skip
            print(
                f"| {label} | {name} | {old_s:.2f} s, {old.steps}, "
                f"{old.completeness_error:.1%} | {new_s:.2f} s, {steps_text(new.steps, new.pairs_at)}, "
                f"{new.completeness_error:.1%} | {old_s / new_s:.1f}x |",
                flush=True,
            )
    print()
    print("| set | before (s) | after (s) | ratio |")
    print("|---|---|---|---|")
    for name, (old_s, new_s) in totals.items():
        print(f"| {name} | {old_s:.1f} | {new_s:.1f} | {old_s / new_s:.1f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
