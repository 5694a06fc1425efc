"""Prefect flow `analyze`: circuit snapshots of existing checkpoints, and emergent heads against a base.

Give `checkpoints` (checkpoint directories, or run directories: every save of the run) and
optionally `base`: each is snapshotted into `<checkpoint>/circuit/` (kept if already there); with
`base`, the heads in a checkpoint's circuit and not in the base's are its emergent heads, e.g. a
distilled model against the base model it came from. The snapshots fan out over `cluster`: one
after another, a local Dask cluster, or an existing one (see flows/cluster.py).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from sparks.config import ClusterSettings, SnapshotSettings
from sparks.flows.cluster import resources, task_runner
from sparks.train.saves import is_run_dir, run_saves
from sparks.train.writers import writing


class AnalyzeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoints: list[str] = Field(
        min_length=1,
        description="Checkpoint directories to snapshot, or run directories (every save).",
    )
    base: str | None = Field(
        None,
        description="The base model's checkpoint directory (emergent heads are relative to it).",
    )
    pairs: str | None = Field(
        None,
        description="Clean/corrupted prompt pairs (JSONL) built for these checkpoints' tokenizer "
        "by `sparks pairs`, or a world's pairs.jsonl for world models; default: a run "
        "directory's own pairs.jsonl.",
    )
    snapshot: SnapshotSettings = SnapshotSettings()
    cluster: ClusterSettings = ClusterSettings()


def targets(config: AnalyzeConfig) -> tuple[list[tuple[str, int]], str]:
    """(checkpoint, step) for every checkpoint to snapshot, and the pairs file, or a one-line
    error naming what is missing."""
    found, pairs = [], config.pairs
    for c in config.checkpoints:
        if is_run_dir(Path(c)):
            found += [(str(p), step) for step, p in run_saves(Path(c))]
            pairs = pairs or str(Path(c) / "pairs.jsonl")
        elif not Path(c).is_dir():
            raise FileNotFoundError(
                f"checkpoint {c} does not exist: pass a checkpoint or run directory"
            )
        else:
            found.append((c, 0))
    if pairs is None:
        raise ValueError("analyze needs pairs: give pairs (a pairs JSONL file) or a run directory")
    return found, pairs


@task(name="snapshot", task_run_name="snapshot-{model_dir}", cache_policy=NO_CACHE, retries=1)
def snapshot(model_dir: str, step: int, pairs: str, settings: SnapshotSettings) -> list[str]:
    # Idempotent (a snapshot on disk is kept; it is written under a temporary name and renamed),
    # so running it again, here or on another worker after one died, writes nothing twice.
    from sparks.circuits import snapshot_checkpoint
    from sparks.circuits.snapshot import read_snapshot

    out = Path(model_dir) / "circuit"
    if out.exists():
        return list(read_snapshot(out).heads)
    for stale in Path(model_dir).glob(".circuit.tmp-*"):  # left by a worker that died writing
        import shutil

        shutil.rmtree(stale, ignore_errors=True)
    snap = snapshot_checkpoint(
        model_dir,
        pairs,
        out,
        settings,
        step=step,
        record_failure=True,  # a diverged checkpoint is recorded as failed, the others go on
        progress=False,
    )
    return list(snap.heads)


@flow(name="snapshot-checkpoints", description="Snapshot checkpoints, fanned out over a cluster.")
def snapshot_all(
    found: list[tuple[str, int]], pairs: str, settings: SnapshotSettings, cluster: ClusterSettings
) -> dict[str, list[str]]:
    with resources(cluster):
        futures = {c: snapshot.submit(c, step, pairs, settings) for c, step in found}
    return {c: f.result() for c, f in futures.items()}


@flow(
    name="analyze",
    description="Snapshot existing checkpoints; list heads that emerged relative to a base model.",
)
def analyze(config: AnalyzeConfig) -> dict:
    found, pairs = targets(config)
    every = found + ([(config.base, 0)] if config.base else [])
    run = snapshot_all.with_options(task_runner=task_runner(config.cluster))
    with writing(config.checkpoints, role="analyze"):  # a live run's saves are not written into
        heads = run(every, pairs, config.snapshot, config.cluster)
    out: dict = {"heads": {c: heads[c] for c, _ in found}}
    if config.base:
        base = set(heads[config.base])
        out["emergent"] = {c: [h for h in heads[c] if h not in base] for c, _ in found}
    return out
