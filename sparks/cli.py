"""The `sparks` command line. Each subcommand validates its input, then calls one library function.

Errors that a user can fix (a missing path, a malformed config, an empty file) print one line,
`sparks: error: ...`, and exit with status 2; nothing already written is touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, FileExistsError, RuntimeError)


def _world_build(args: argparse.Namespace) -> None:
    from sparks.world.build import WorldSpec, build_world

    world = build_world(Path(args.out_dir), WorldSpec(seed=args.seed))
    print(f"world ready in {world.root}: model in {world.model_dir}, tasks in {world.root / 'tasks'}, "
          f"pairs in {world.pairs_path}")


def _demo(args: argparse.Namespace) -> None:
    from sparks.demo import run_demo

    run_demo(args.config, Path(args.out))


def _snapshot(args: argparse.Namespace) -> None:
    from sparks.circuits import snapshot_checkpoint

    snap = snapshot_checkpoint(
        args.model_dir, args.pairs, args.out, steps=args.steps, top_k=args.top_k,
        batch_size=args.batch_size, metric=args.metric, n_pairs=args.n_pairs, step=args.step,
    )
    faith = snap.faithfulness.get(args.top_k)
    print(f"snapshot written to {args.out}: {len(snap.heads)} heads in the top-{args.top_k} circuit "
          f"({', '.join(snap.heads)}); faithfulness {faith:.3f}; {snap.seconds:.1f}s")


def _mlflow_sync(args: argparse.Namespace) -> None:
    from sparks.log.tracking import upload_pending

    n = upload_pending(Path(args.output_dir), args.uri)
    print(f"uploaded {n} pending records from {args.output_dir} to MLflow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="the embedded tiny world").add_subparsers(dest="world_cmd", required=True)
    build = world.add_parser("build", help="build tokenizer, tiny model, tasks and pairs into OUT_DIR")
    build.add_argument("out_dir", metavar="OUT_DIR")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=_world_build)

    snap = sub.add_parser("snapshot", help="build a circuit snapshot (EAP-IG over attention heads) of a checkpoint")
    snap.add_argument("model_dir", metavar="MODEL_DIR")
    snap.add_argument("--pairs", required=True, metavar="PAIRS.jsonl", help="clean/corrupted prompt pairs")
    snap.add_argument("--out", required=True, metavar="DIR", help="snapshot directory to create")
    snap.add_argument("--steps", type=int, default=5, help="integrated-gradient steps (1 = plain EAP)")
    snap.add_argument("--top-k", type=int, default=200, help="edges kept in the circuit")
    snap.add_argument("--batch-size", type=int, default=16)
    snap.add_argument("--metric", default="logit_diff", choices=("logit_diff", "logprob", "kl"))
    snap.add_argument("--n-pairs", type=int, default=None, help="use only the first N pairs")
    snap.add_argument("--step", type=int, default=0, help="training step recorded in the snapshot")
    snap.set_defaults(func=_snapshot)

    sync = sub.add_parser("mlflow-sync", help="upload what a run kept locally while MLflow was unreachable")
    sync.add_argument("output_dir", metavar="OUTPUT_DIR")
    sync.add_argument("--uri", default=None, help="tracking URI (default: the run's own)")
    sync.set_defaults(func=_mlflow_sync)

    demo = sub.add_parser("demo", help="run the main job on the embedded default")
    demo.add_argument("--config", default="configs/demo.yaml")
    demo.add_argument("--out", default="runs/demo")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"sparks: error: {first}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
