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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="the embedded tiny world").add_subparsers(dest="world_cmd", required=True)
    build = world.add_parser("build", help="build tokenizer, tiny model, tasks and pairs into OUT_DIR")
    build.add_argument("out_dir", metavar="OUT_DIR")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=_world_build)

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
