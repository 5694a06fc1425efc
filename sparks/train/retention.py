"""Checkpoint retention: what each save keeps on disk once nothing needs the rest.

A save (`checkpoint-N/`) holds weights, optimizer/scheduler/RNG state, the trainer state, and what
sparks adds: `circuit/` (its snapshot) and `eval/` (its evaluation). Under `checkpoints:`
(`CheckpointSettings`):

1. state: only the newest `keep_state` saves of a stage keep optimizer, scheduler and RNG state
   (what resuming needs). An older save drops it as soon as a newer save is complete (the Trainer
   writes trainer_state.json last), during training (`StatePruner`).
2. weights (`keep_weights: false`): a save older than the newest `keep_state` drops its weights
   once its snapshot is on disk and, if it is one of the evaluated saves, its evaluation too.
3. never: `circuit/`, `eval/`, config, tokenizer and trainer state. A save without weights still
   counts as a save (`sparks.train.saves.saves`): compare, analyze and the ledger read it.

Every removal is idempotent and starts by writing `retention.json` (what goes), so a kill at any
point leaves a save that the next pass (a rerun, the next save, the end of the stage) finishes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from sparks.config import CheckpointSettings
from sparks.files import atomic_write_text
from sparks.models.loading import WEIGHT_PATTERNS
from sparks.train.saves import MARKER, has_state, has_weights, pruned, saves

# optimizer/scheduler/RNG state as the Trainer, accelerate (FSDP) and DeepSpeed write it
STATE_PATTERNS = (
    "optimizer.pt",
    "optimizer.bin",
    "optimizer_*",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "global_step*",
    "latest",
    "zero_to_fp32.py",
)


def _remove(ckpt: Path, what: str, patterns: tuple[str, ...]) -> int:
    """Record then remove `what` ('state' or 'weights') from `ckpt`; the bytes freed."""
    record = pruned(ckpt)
    if not record.get(what):
        atomic_write_text(ckpt / MARKER, json.dumps(record | {what: "removed"}))
    freed = 0
    for pattern in patterns:
        for p in ckpt.glob(pattern):
            if p.is_dir():
                freed += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                shutil.rmtree(p)
            elif p.exists():
                freed += p.stat().st_size
                p.unlink()
    return freed


def prune_stage(
    stage_dir: Path,
    policy: CheckpointSettings,
    *,
    weights_done: Callable[[Path], bool] | None = None,
) -> int:
    """Apply `policy` to one stage's saves: state beyond the newest `keep_state`, and (with
    keep_weights false) weights of older saves for which `weights_done(save)` (its snapshot and
    evaluation are on disk). Returns the bytes freed. Safe to call at any time, any number of times."""
    found = saves(stage_dir)
    older = found[: max(len(found) - policy.keep_state, 0)]
    freed = 0
    for ckpt in older:
        marked = pruned(ckpt)
        if has_state(ckpt) or marked.get("state"):
            freed += _remove(ckpt, "state", STATE_PATTERNS)
        if policy.keep_weights or weights_done is None:
            continue
        if (has_weights(ckpt) or marked.get("weights")) and weights_done(ckpt):
            freed += _remove(ckpt, "weights", WEIGHT_PATTERNS)
    return freed


class StatePruner(TrainerCallback):
    """Drop older saves' optimizer/scheduler/RNG state after each save (main process only), so a
    long run holds `keep_state` (+1 while a save is being written) copies of it, not one per save."""

    def __init__(self, stage_dir: Path, policy: CheckpointSettings):
        self.stage_dir, self.policy, self.freed = Path(stage_dir), policy, 0

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.freed += prune_stage(self.stage_dir, self.policy)
