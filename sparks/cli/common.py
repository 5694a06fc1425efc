"""What several command groups share: the run's world, benchmark files, cluster options."""

from __future__ import annotations

from pathlib import Path

import typer

from sparks.cli.options import Args, field_option
from sparks.config import ClusterSettings


def collect(ctx: typer.Context, **values) -> Args:
    """A command's values as `Args`, with `given`: the options written on the command line."""
    from typer._click.core import ParameterSource

    given = {n for n in values if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
    return Args(**values, given=given)


def world_of(args: Args):
    """The world of --world DIR, or the default one (built once into the shared cache)."""
    from sparks.config import WorldSettings
    from sparks.world.build import World, world_for

    return World(Path(args.world)) if args.world else world_for(WorldSettings())


def benchmark_files(args: Args, selected: list[str] | None = None) -> dict[str, str]:
    """NAME=PATH pairs; a NAME that is not among `selected` benchmarks is refused at once."""
    given = args.benchmark_file or []
    bad = [f for f in given if "=" not in f]
    if bad:
        raise ValueError(
            f"--benchmark-file {bad[0]!r}: write it as NAME=PATH, e.g. aime24=data/aime24.jsonl"
        )
    files = dict(f.split("=", 1) for f in given)
    stray = [n for n in files if selected is not None and n not in selected]
    if stray:
        raise ValueError(
            f"--benchmark-file {stray[0]}=...: {stray[0]!r} is not a selected benchmark "
            f"({', '.join(selected or [])}); fix the name or add --benchmark {stray[0]}"
        )
    return files


def cluster_of(args: Args) -> ClusterSettings:
    from sparks.config import validate_config

    raw = {"workers": args.workers, "address": args.address}
    return validate_config(raw, source="--workers/--address", model=ClusterSettings)


WORKERS = field_option(
    ClusterSettings,
    "workers",
    "--workers",
    help="checkpoints at once on a local Dask cluster (1: serial)",
)
ADDRESS = typer.Option(
    None, "--address", help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786"
)
BENCHMARK_FILE = typer.Option(
    None,
    "--benchmark-file",
    metavar="NAME=PATH",
    help="a local .jsonl/.parquet file or directory for benchmark NAME (needed offline); repeatable",
)
WORLD_DIR = typer.Option(
    None, "--world", metavar="DIR", help="world directory for the `world` benchmark"
)
