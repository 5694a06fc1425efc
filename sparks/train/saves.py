"""What a run leaves on disk, read back: its saves (checkpoints), their order and global steps,
the stage models (`final/`) and evaluation files. A save counts only when it is complete: the
Trainer writes trainer_state.json last, and the weights must be there (a rank that lost the race
for a directory, or a save killed halfway, never passes for a done one).

    OUTPUT_DIR/config.json                     the run's config (written by the run)
    OUTPUT_DIR/stage{i}-{method}/checkpoint-N  save N of stage i: global step offset(i) + N
    OUTPUT_DIR/stage{i}-{method}/final         the stage's model

Checkpoint retention (`sparks.train.retention`) may remove a save's optimizer state and weights;
such a save still counts (`saves`), with its circuit, evaluation and trainer state; `checkpoints`
are the saves that still have weights.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from sparks.errors import UserError
from sparks.files import atomic_dir, is_write_error, write_failure
from sparks.models.loading import WEIGHT_PATTERNS

MARKER = "retention.json"  # in a save: what checkpoint retention removed (sparks.train.retention)


def is_model_dir(d: Path) -> bool:
    """A saved model: its config and weights (a tokenizer-only or half-written one is not)."""
    return (Path(d) / "config.json").is_file() and has_weights(d)


def has_weights(d: Path) -> bool:
    return any(any(Path(d).glob(p)) for p in WEIGHT_PATTERNS)


def has_state(ckpt: Path) -> bool:
    """Whether a save still has its optimizer state (what resuming needs)."""
    c = Path(ckpt)
    return any(
        any(c.glob(p)) for p in ("optimizer.pt", "optimizer.bin", "optimizer_*", "global_step*")
    )


def pruned(ckpt: Path) -> dict:
    """What retention removed from a save ({'state': 'removed', 'weights': 'removed'}), or {}."""
    marker = Path(ckpt) / MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {}


def saves(d: Path) -> list[Path]:
    """Complete saves of one stage directory, in step order, with or without their weights (a
    save whose weights retention removed keeps its circuit, evaluation and trainer state)."""
    found = [
        p
        for p in Path(d).glob("checkpoint-*")
        if re.fullmatch(r"checkpoint-\d+", p.name)
        and (p / "trainer_state.json").is_file()
        and (is_model_dir(p) or pruned(p).get("weights"))
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def checkpoints(d: Path) -> list[Path]:
    """Complete saves of one stage directory that have their weights, in step order."""
    return [p for p in saves(d) if is_model_dir(p)]


def resume_point(d: Path) -> Path | None:
    """The save to resume a stage from: the newest with its optimizer state, else the newest with
    weights (the optimizer then starts afresh)."""
    ckpts = checkpoints(d)
    with_state = [c for c in ckpts if has_state(c)]
    found = with_state or ckpts
    return found[-1] if found else None


def evaluated_saves(d: Path, every: int) -> list[Path]:
    """The saves of a stage that the run evaluates: every `every`-th, counting saves whose
    weights retention removed (so the choice does not move when weights go)."""
    return saves(d)[every - 1 :: every]


def clear_incomplete(d: Path) -> None:
    """Remove checkpoint directories a failed or killed save left without trainer_state.json
    (the Trainer writes it last): they hold space and are never read."""
    for p in Path(d).glob("checkpoint-*"):
        if p.is_dir() and not (p / "trainer_state.json").is_file():
            shutil.rmtree(p, ignore_errors=True)


def last_checkpoint(d: Path) -> Path | None:
    ckpts = checkpoints(d)
    return ckpts[-1] if ckpts else None


def save_step(ckpt: Path) -> int:
    """N of checkpoint-N: the stage's own step."""
    return int(Path(ckpt).name.split("-")[1])


def is_run_dir(d: Path) -> bool:
    return (Path(d) / "config.json").is_file() and (Path(d) / "run.json").is_file()


def stage_dir(out: str | Path, i: int, method: str) -> Path:
    """Stage `i`'s directory in the run directory `out`: OUTPUT_DIR/stage{i}-{method}/."""
    return Path(out) / f"stage{i}-{method}"


def run_saves(run_dir: Path) -> list[tuple[int, Path]]:
    """Every complete save of a run directory with its global step, in order (with or without
    weights: see `is_model_dir`)."""
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    found, offset = [], 0
    for i, stage in enumerate(cfg["stages"]):
        for c in saves(stage_dir(run_dir, i, stage["method"])):
            found.append((offset + save_step(c), c))
        offset += stage["max_steps"]
    return found


def evaluation_files(out: Path, stages: list[tuple[str, int]]) -> dict[int, Path]:
    """metrics.json of the base model (step 0) and of every evaluated save, by the run's global
    step; `stages` is each stage's (method, max_steps), in order."""
    from sparks.evaluate.runner import METRICS_FILE, evaluated

    found, offset = {}, 0
    if evaluated(out / "base" / "eval"):
        found[0] = out / "base" / "eval" / METRICS_FILE
    for i, (method, max_steps) in enumerate(stages):
        for c in saves(stage_dir(out, i, method)):
            if evaluated(c / "eval"):
                found[offset + save_step(c)] = c / "eval" / METRICS_FILE
        offset += max_steps
    return found


def publish_model(tmp: Path, final: Path) -> None:
    """Rename a complete model directory `tmp` to `final` (replacing a weightless one); on any
    failure `tmp` is removed and `final` is left as it was."""
    try:
        if not is_model_dir(tmp):
            raise UserError(
                f"the trainer wrote no weights into {final}: with a sharded model, the launch "
                "config must save full weights (FULL_STATE_DICT / zero3_save_16bit_model)"
            )
        shutil.rmtree(final, ignore_errors=True)  # a weightless final/ of an older run
        os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_write_error(e):
            raise write_failure(final, e) from e
        raise


def model_from_checkpoint(ckpt: Path, final: Path, tokenizer, *, dtype: str) -> None:
    """`final/` from a checkpoint (a run killed after its last save, before the final one)."""
    from sparks.models.loading import load_model

    shutil.rmtree(final, ignore_errors=True)  # a weightless final/ of an older run
    with atomic_dir(final) as tmp:
        load_model(ckpt, dtype=dtype).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
