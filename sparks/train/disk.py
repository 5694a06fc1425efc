"""Disk a run's saves take, from the model's shape and the retention settings, against the free
space at output_dir: printed by `sparks run --dry-run`, and checked before a real run trains.

Per save: weights (parameters x the model's dtype) and optimizer state (AdamW's two moments in
the parameters' dtype; DeepSpeed adds float32 master weights: 12 bytes a parameter). A stage
holds, at its peak, every save's weights (retention removes them only after the stage's
evaluation), `keep_state` + 1 optimizer states (a new save is complete before older state goes)
and its final model; at its end, what `checkpoints:` keeps. Circuits, evaluations and trainer
state are kilobytes to a few megabytes a save and are left out.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sparks.config import WORLD, RunConfig
from sparks.errors import UserError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


class DiskSpaceError(UserError):
    """A run whose saves cannot fit in the free space at its output directory."""


@dataclass(frozen=True)
class DiskEstimate:
    weights: int  # bytes of one save's weights
    state: int  # bytes of one save's optimizer state
    saves: int  # saves in the run
    end: int  # the run's saves and final models when it ends, under the retention settings
    peak: int  # most at once
    free: int  # free bytes where output_dir is (or would be)
    existing: int  # already in output_dir (a resumed run): counted in `peak`, not to be written

    @property
    def fits(self) -> bool:
        return self.peak - self.existing <= self.free


def size(n: float) -> str:
    """Bytes for people: 512 B, 4.2 MB, 31.4 GB (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def run_shape(cfg: RunConfig) -> dict | None:
    """The trained model's shape (the embedded world's from its spec, so a dry run needs no
    built world); None when it is not known offline."""
    from sparks.models.shapes import model_shape

    if cfg.model.path != WORLD:
        return model_shape(cfg.model.path)
    from sparks.world.build import WorldSpec

    w = WorldSpec().model
    return dict(
        hidden_size=w.hidden, intermediate_size=w.hidden * w.mlp_ratio, num_hidden_layers=w.layers,
        num_attention_heads=w.heads, num_key_value_heads=w.kv_heads, head_dim=w.head_dim,
        vocab_size=WorldSpec().vocab_size, tie_word_embeddings=True,
    )  # fmt: skip


def _free(out: Path) -> int:
    """Free bytes on the filesystem that holds `out` (its nearest existing parent)."""
    p = out.resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def _existing(out: Path) -> int:
    if not out.is_dir():
        return 0
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and not f.is_symlink())


def estimate_disk(cfg: RunConfig, shape: dict, *, deepspeed: bool = False) -> DiskEstimate:
    """What `cfg`'s saves take on disk under its `checkpoints:` settings, and the room for them."""
    from sparks.models.shapes import parameter_count

    n, e = parameter_count(shape), DTYPE_BYTES[cfg.model.dtype]
    weights, state = n * e, (n * 12 if deepspeed else 2 * n * e)
    keep = cfg.checkpoints
    done, peak, total = 0, 0, 0
    for s in cfg.stages:
        k = s.max_steps // s.save_steps
        total += k
        during = k * weights + min(keep.keep_state + 1, k) * state + weights  # + final/
        kept_weights = k if keep.keep_weights else min(keep.keep_state, k)
        after = kept_weights * weights + min(keep.keep_state, k) * state + weights
        peak = max(peak, done + during)
        done += after
    out = Path(cfg.output_dir)
    return DiskEstimate(weights, state, total, done, max(peak, done), _free(out), _existing(out))


def describe(est: DiskEstimate, cfg: RunConfig) -> list[str]:
    """The dry run's lines for `est`."""
    keep = cfg.checkpoints
    return [
        f"disk (checkpoints: keep_state {keep.keep_state}, keep_weights "
        f"{'yes' if keep.keep_weights else 'no'}):",
        f"  per save: weights {size(est.weights)} + optimizer state {size(est.state)}; "
        f"{est.saves} saves",
        f"  at the end {size(est.end)}, at the peak {size(est.peak)}"
        + (f" ({size(est.existing)} already written)" if est.existing else "")
        + f"; free at {cfg.output_dir}: {size(est.free)}",
    ]


def refusal(est: DiskEstimate, cfg: RunConfig) -> str:
    """The one-line reason a run that does not fit is refused, with the settings to change."""
    fixes = []
    if cfg.checkpoints.keep_weights:
        fixes.append("checkpoints.keep_weights: false")
    fixes += ["fewer saves (a larger save_steps)", "another output_dir, or free space"]
    return (
        f"the run's saves need up to {size(est.peak - est.existing)} more at {cfg.output_dir} but "
        f"{size(est.free)} is free: set {', or '.join(fixes)}"
    )


def check_disk(cfg: RunConfig, shape: dict | None, *, deepspeed: bool = False) -> None:
    """Refuse, in one line, a run whose saves cannot fit (`checkpoints.check_disk: false` skips it)."""
    if not cfg.checkpoints.check_disk or shape is None:
        return
    est = estimate_disk(cfg, shape, deepspeed=deepspeed)
    if not est.fits:
        raise DiskSpaceError(
            refusal(est, cfg) + " (checkpoints.check_disk: false skips this check)"
        )
