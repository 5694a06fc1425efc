"""Prefect flow `analyze`: circuit snapshots of existing checkpoints, and emergent heads against a base.

Give `checkpoints` (and optionally `base`): each is snapshotted into `<checkpoint>/circuit/` (kept
if already there); with `base`, the heads in a checkpoint's circuit and not in the base's are its
emergent heads, e.g. a distilled model against the base model it came from.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from sparks.config import SnapshotSettings


class AnalyzeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoints: list[str] = Field(min_length=1, description="Checkpoint directories to snapshot.")
    base: str | None = Field(
        None,
        description="The base model's checkpoint directory (emergent heads are relative to it).",
    )
    pairs: str = Field(
        description="Clean/corrupted prompt pairs (JSONL) built for these checkpoints' tokenizer "
        "by `sparks pairs`, or a world's pairs.jsonl for world models."
    )
    snapshot: SnapshotSettings = SnapshotSettings()


@task(name="snapshot", task_run_name="snapshot-{model_dir}", cache_policy=NO_CACHE)
def snapshot(model_dir: str, config: AnalyzeConfig) -> list[str]:
    from sparks.circuits import snapshot_checkpoint
    from sparks.circuits.snapshot import read_snapshot

    out = Path(model_dir) / "circuit"
    if out.exists():
        return list(read_snapshot(out).heads)
    snap = snapshot_checkpoint(
        model_dir,
        config.pairs,
        out,
        **config.snapshot.checkpoint_kwargs(),
        record_failure=True,  # a diverged checkpoint is recorded as failed, the others go on
        progress=False,
    )
    return list(snap.heads)


@flow(
    name="analyze",
    description="Snapshot existing checkpoints; list heads that emerged relative to a base model.",
)
def analyze(config: AnalyzeConfig) -> dict:
    heads = {c: snapshot(c, config) for c in config.checkpoints}
    out: dict = {"heads": heads}
    if config.base:
        base = set(snapshot(config.base, config))
        out["emergent"] = {c: [h for h in hs if h not in base] for c, hs in heads.items()}
    return out
