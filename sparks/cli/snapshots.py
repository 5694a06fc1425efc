"""Circuits from the command line: `snapshot` (one checkpoint), `pairs` (a pair file for any
model), `analyze` (every save of a run without a snapshot, fanned out over Dask)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer

from sparks.circuits.spec import MetricName, Schedule, SnapshotSpec
from sparks.cli.app import app
from sparks.cli.common import (
    ADDRESS,
    BENCHMARK_FILE,
    WORKERS,
    benchmark_files,
    cluster_of,
    collect,
    world_of,
)
from sparks.cli.options import field_option, number, steps_value
from sparks.config import PairsSettings

SPEC = SnapshotSpec


def _json(flag: str, text: str):
    """A JSON flag's value (the training hook's process mode writes them), or a one-line error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag}: not JSON ({e.msg} at character {e.pos})") from None


@app.command(help="build a circuit snapshot (EAP-IG over attention heads) of a checkpoint")
def snapshot(
    model_dir: str = typer.Argument(..., metavar="MODEL_DIR"),
    pairs: str = typer.Option(
        ..., "--pairs", metavar="PAIRS.jsonl", help="clean/corrupted prompt pairs"
    ),
    out: str = typer.Option(..., "--out", metavar="DIR", help="snapshot directory to create"),
    steps: str = field_option(SPEC, "steps", "--steps", parser=steps_value, metavar="N|auto"),
    steps_tolerance: float = field_option(SPEC, "steps_tolerance", "--steps-tolerance"),
    max_steps: int = field_option(SPEC, "max_steps", "--max-steps"),
    top_k: int = field_option(SPEC, "top_k", "--top-k"),
    batch_size: int = field_option(SPEC, "batch_size", "--batch-size"),
    metric: MetricName = field_option(SPEC, "metric", "--metric"),
    n_pairs: int = field_option(SPEC, "n_pairs", "--n-pairs"),
    step: int = typer.Option(
        0, "--step", callback=number(ge=0), help="training step recorded in the snapshot"
    ),
    schedule: Schedule = field_option(SPEC, "schedule", "--schedule"),
    tokens_per_pass: int | None = field_option(SPEC, "tokens_per_pass", "--tokens-per-pass"),
    dtype: Literal["float32", "bfloat16", "float16", "float64"] = typer.Option(
        "float32", "--dtype"
    ),
    device: str | None = field_option(
        SPEC, "device", "--device", help="e.g. cuda:1 (default: cuda if any, else cpu)"
    ),
    record_failure: bool = typer.Option(
        False,
        "--record-failure",
        help="a model with NaN/inf writes a failed snapshot instead of exiting with an error",
    ),
    pair_set: str = typer.Option(
        "", "--pair-set", metavar="NAME", help="the pair set the file holds (recorded)"
    ),
    # the training hook's process mode: the run's whole spec, and a save's other pair sets
    spec_json: str | None = typer.Option(None, "--spec", hidden=True),
    more_sets: str | None = typer.Option(None, "--more-sets", hidden=True),
) -> None:
    from sparks.circuits import snapshot_checkpoint
    from sparks.config import validate_config

    if spec_json:
        spec = validate_config(_json("--spec", spec_json), source="--spec", model=SnapshotSpec)
    else:
        values = locals()
        raw = {f: values[f] for f in SnapshotSpec.model_fields}
        spec = validate_config(raw, source="sparks snapshot", model=SnapshotSpec)
    snap = snapshot_checkpoint(
        model_dir, pairs, out, spec, step=step, dtype=dtype, record_failure=record_failure,
        pair_set=pair_set, more_sets=_json("--more-sets", more_sets) if more_sets else [],
    )  # fmt: skip
    if getattr(snap, "reason", None):
        print(f"snapshot of step {step} failed, recorded in {out}: {snap.reason}")
        return
    size = f"top-{spec.top_k} circuit"
    if spec.top_k >= snap.n_edges:
        size = f"circuit: the whole graph (--top-k {spec.top_k} >= its {snap.n_edges} edges)"
    rec = snap.settings["pairs"]
    named = f"pair set {rec['set']}, " if rec["set"] else ""
    print(
        f"snapshot written to {out}: {len(snap.heads)} heads in the {size} "
        f"({', '.join(snap.heads)}); faithfulness {snap.circuit_faithfulness:.3f}; "
        f"{snap.steps_text}, completeness error {snap.completeness_error:.1%}; "
        f"{named}{rec['n_pairs']} pairs from {rec['file']} (sha256 {rec['sha256'][:12]}); "
        f"{snap.seconds:.1f}s"
    )


@app.command(help="build clean/corrupted attribution pairs for a model, in its own tokens")
def pairs(
    ctx: typer.Context,
    model: str = typer.Argument(
        ..., metavar="MODEL", help="checkpoint directory, hub id or 'world'"
    ),
    source: list[str] = typer.Option(
        ...,
        "--source",
        metavar="NAME|FILE",
        help="problems: aime24, amc23, world, a .jsonl/.parquet file or a hub id (repeatable); "
        "in file mode, the pairs file",
    ),
    mode: Literal["numbers", "contrast", "file"] = typer.Option("numbers", "--mode"),
    reference: str | None = field_option(
        PairsSettings,
        "reference",
        "--reference",
        metavar="MODEL",
        help="contrast: model B, whose answer prefixes are the corrupted inputs",
    ),  # fmt: skip
    n: int = field_option(PairsSettings, "n", "--n"),
    prefix_tokens: int = field_option(PairsSettings, "prefix_tokens", "--prefix-tokens"),
    seed: int = field_option(PairsSettings, "seed", "--seed"),
    backend: Literal["vllm", "transformers"] = field_option(PairsSettings, "backend", "--backend"),
    benchmark_file: list[str] | None = BENCHMARK_FILE,
    world: str | None = typer.Option(
        None, "--world", metavar="DIR", help="world directory for 'world'"
    ),
    out: str = typer.Option(..., "--out", metavar="FILE", help="pairs JSONL file to write"),
) -> None:
    from sparks.config import WORLD
    from sparks.pairs import build_pairs
    from sparks.pairs.build import check_request

    args = collect(ctx, **{k: v for k, v in locals().items() if k != "ctx"})
    check_request(mode, source, reference)  # before a world is built for it
    files = benchmark_files(args, source)
    needs_world = WORLD in (model, reference) or (
        mode != "file" and WORLD in source and WORLD not in files
    )
    w = world_of(args) if needs_world else None

    def resolve(m):
        return str(w.model_dir) if w is not None and m == WORLD else m

    report = build_pairs(
        resolve(model), out, mode=mode, sources=source, files=files,
        reference=resolve(reference) if reference else None, n=n, prefix_tokens=prefix_tokens,
        seed=seed, backend=backend, world=w,
    )  # fmt: skip
    print(report.line())


def _run_snapshot_settings(targets: list[str]):
    """A run directory's own snapshot settings (its saves are snapshotted as the run would)."""
    from sparks.config import SnapshotSettings
    from sparks.train.saves import is_run_dir

    for t in targets:
        if is_run_dir(Path(t)):
            return SnapshotSettings(**json.loads((Path(t) / "config.json").read_text())["snapshot"])
    return SnapshotSettings()


def check_targets(found: list[tuple[str, int]], what: str) -> None:
    """Every checkpoint a flow would work on exists with its weights, or a one-line error, before
    any server, store or world is started."""
    from sparks.models.loading import check_checkpoint
    from sparks.train.writers import busy

    if not found:
        raise ValueError(f"nothing to {what}: the directories given hold no checkpoint")
    if line := busy([c for c, _ in found]):
        raise ValueError(line)
    for c, _ in found:
        if what == "analyze" and (Path(c) / "circuit").is_dir():
            continue  # snapshotted already: kept as it is, weights or not (retention)
        if Path(c).exists() or c.startswith(("/", ".")):  # not a hub id
            check_checkpoint(c)


@app.command(
    help="snapshot the saves of a run directory (or checkpoints) that have no snapshot, fanned "
    "out over a Dask cluster; with --base, their emergent heads"
)
def analyze(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(..., metavar="RUN_OR_CHECKPOINT..."),
    pairs: str | None = typer.Option(
        None, "--pairs", help="pairs JSONL (default: the run's pairs.jsonl)"
    ),
    base: str | None = typer.Option(
        None, "--base", metavar="DIR", help="the base model's checkpoint"
    ),
    steps: str | None = field_option(
        SPEC,
        "steps",
        "--steps",
        default=None,
        parser=steps_value,
        metavar="N|auto",
        help="IG steps or auto (default: the run's)",
    ),  # fmt: skip
    top_k: int | None = field_option(
        SPEC, "top_k", "--top-k", default=None, help="edges kept (default: the run's)"
    ),
    workers: int = WORKERS,
    address: str | None = ADDRESS,
) -> None:
    from sparks.config import SnapshotSettings, validate_config
    from sparks.flows.analyze import AnalyzeConfig, analyze
    from sparks.flows.analyze import targets as found_targets
    from sparks.flows.cluster import api_for_workers
    from sparks.flows.engine import prefect_env

    args = collect(ctx, **{k: v for k, v in locals().items() if k != "ctx"})
    settings = _run_snapshot_settings(targets)
    update = {k: v for k, v in (("steps", steps), ("top_k", top_k)) if v is not None}
    snapshot = validate_config(
        settings.model_dump() | update, source="--steps/--top-k", model=SnapshotSettings
    )
    cfg = AnalyzeConfig(
        checkpoints=targets, base=base, pairs=pairs, snapshot=snapshot, cluster=cluster_of(args)
    )
    found, pairs_file = found_targets(cfg)
    check_targets(found, "analyze")
    if not Path(pairs_file).is_file():
        raise FileNotFoundError(f"pairs file {pairs_file} does not exist: give --pairs PAIRS.jsonl")
    prefect_env()
    with api_for_workers(cfg.cluster):
        out = analyze(cfg)
    for c, heads in out["heads"].items():
        extra = (
            f"; emergent: {', '.join(out['emergent'][c]) or 'none'}" if "emergent" in out else ""
        )
        print(f"{c}: {len(heads)} heads ({', '.join(heads)}){extra}")
