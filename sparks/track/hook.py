"""The checkpoint hook: a circuit snapshot at every save, written into `checkpoint-N/circuit/`.

Thin, like TRL's callbacks: `on_save` opens the checkpoint the Trainer just wrote and hands the
heavy work to `build_snapshot`. The live model is snapshotted in eval mode and put back as it was;
RNG states are saved and restored and parameters' gradients are never touched, so training with
and without the hook gives identical losses for the same seed. A snapshot already on disk (a
resumed run) is not redone. With `mode="process"` the snapshot runs from the saved checkpoint in a
separate process beside training (for sharded training, ZeRO-3 / FSDP, and models too large to
pause), with every snapshot setting and on the device the settings name; collected at the end of
training. A run with several pair sets gets one such process per save for all its sets (one
model load); the other sets' hooks read what it wrote. A save whose model gives NaN/inf is recorded as a failed snapshot and training goes on.

On several processes (`ranks`): with whole models on every rank (DDP) the main process snapshots
and the others wait in training's next collective. With FSDP / FSDP2 every rank enters the gather
of the full weights and the main process snapshots a plain copy (`sparks.track.sharded`); with
DeepSpeed ZeRO-3 the hook switches to process mode on the consolidated checkpoints and says so.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback

from sparks.circuits.batches import PairBatch
from sparks.circuits.snapshot import (
    CircuitSnapshot,
    FailedSnapshot,
    build_or_fail,
    model_fingerprint,
    read_snapshot,
    save_snapshot,
)
from sparks.circuits.spec import SnapshotSpec
from sparks.track.sharded import sharding, unsharded_copy
from sparks.train.ranks import Ranks

OnSnapshot = Callable[[int, CircuitSnapshot | FailedSnapshot, Path], None]


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore python, numpy and torch (CPU and CUDA) RNG states on exit."""
    import numpy as np
    import torch

    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class CircuitSnapshotCallback(TrainerCallback):
    """Build, write and report a CircuitSnapshot at every checkpoint save."""

    def __init__(
        self,
        batches: list[PairBatch],
        spec: SnapshotSpec,
        *,
        step_offset: int = 0,
        on_snapshot: OnSnapshot | None = None,
        mode: str = "inline",
        pairs_path: str | Path | None = None,
        dtype: str = "float32",
        progress: bool = False,
        ranks: Ranks | None = None,
        subdir: str = "circuit",
        pairs: dict | None = None,
        more_sets: Sequence[dict] = (),
        led: bool = False,
        shared: dict | None = None,
    ):
        """`spec`: what each snapshot measures (its metric auto: chosen for `batches`);
        `pairs`: the pair set's record (`pairs.pairs_record`), kept in every snapshot."""
        if mode not in ("inline", "process"):
            raise ValueError(f"unknown snapshot mode {mode!r}: use 'inline' or 'process'")
        if mode == "process" and pairs_path is None:
            raise ValueError(
                "mode 'process' needs pairs_path: the child process reads the pairs from it"
            )
        self.batches, self.spec = batches, spec.snapshot_fields()
        self.pairs, self.progress = pairs, progress
        self.step_offset, self.on_snapshot, self.mode = step_offset, on_snapshot, mode
        # what only the child process needs: it reads and encodes the pairs itself
        self.pairs_path, self.dtype = pairs_path, dtype
        self.ranks = ranks or Ranks()
        self.subdir = subdir  # circuit/, or circuit-NAME/ for a run's other pair sets
        # process mode with several pair sets: the first set's process snapshots every set from
        # one loaded model (`more_sets`: {name, pairs, subdir, metric}); the others are `led`
        self.more_sets, self.led = list(more_sets), led
        self._led: list[tuple[int, Path]] = []
        # one dict for all of a run's hooks: a save's weights are hashed once, not once per set
        self.shared = shared if shared is not None else {}
        self.last_step = -1
        self._children: list[tuple[int, Path, subprocess.Popen]] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.mode == "inline" and sharding(model) == "zero3":
            if self.pairs_path is None:
                raise ValueError(
                    "a ZeRO-3 model is snapshotted from its saved checkpoints in their own "
                    "process, which needs pairs_path"
                )
            self.mode = "process"
            if state.is_world_process_zero:
                print(
                    "[sparks] DeepSpeed ZeRO-3 shards the model: each save is snapshotted from "
                    "its consolidated checkpoint in its own process (snapshot.mode process)",
                    file=sys.stderr,
                )

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.last_step:
            return
        self.last_step = state.global_step
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.mode == "inline" and sharding(model) == "fsdp":
            # every rank enters the gather; the main process snapshots while the others wait
            done = self.ranks.on_main(lambda: (ckpt / self.subdir).exists(), "a snapshot check")
            if not done:
                plain = unsharded_copy(model, is_main=self.ranks.is_main)
                self.ranks.on_main(
                    lambda: self._snapshot(ckpt, state.global_step, plain),
                    f"the snapshot of step {self.step_offset + state.global_step}",
                    share=False,
                )
            return
        if state.is_world_process_zero:
            self._snapshot(ckpt, state.global_step, model)

    def _snapshot(self, ckpt: Path, global_step: int, model) -> None:
        out = ckpt / self.subdir
        clear_stale(ckpt, self.subdir)  # left by a process killed mid-snapshot
        if out.exists():
            return
        step = self.step_offset + global_step
        if self.mode == "process" and self.led:
            self._led.append((step, out))  # the first set's process writes it
            return
        if self.mode == "process":
            self._children.append((step, out, self._spawn(ckpt, out, step)))
            return
        with preserved_rng():
            known = self.shared.get(("fingerprint", step))
            snap = build_or_fail(
                model, self.batches, self.spec, step=step, fingerprint=known,
                progress=self.progress, pairs=self.pairs,
            )  # fmt: skip
        if getattr(snap, "fingerprint", None) and known is None:
            self.shared.clear()  # only this save's weights are ever asked for again
            self.shared[("fingerprint", step)] = snap.fingerprint
        save_snapshot(snap, out)
        if self.on_snapshot:
            self.on_snapshot(step, snap, out)

    def _spawn(self, ckpt: Path, out: Path, step: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "sparks.cli", "snapshot", str(ckpt)]
        cmd += ["--pairs", str(self.pairs_path), "--out", str(out), "--step", str(step)]
        cmd += ["--spec", self.spec.model_dump_json(), "--dtype", self.dtype, "--record-failure"]
        if self.pairs and self.pairs["set"]:
            cmd += ["--pair-set", self.pairs["set"]]
        more = [
            {"name": m["name"], "pairs": str(m["pairs"]), "out": str(ckpt / m["subdir"]),
             "metric": m["metric"]}
            for m in self.more_sets
            if not (ckpt / m["subdir"]).exists()
        ]  # fmt: skip
        if more:
            cmd += ["--more-sets", json.dumps(more)]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def on_train_end(self, args, state, control, **kwargs):
        """Wait for every snapshot process; one that died leaves its save without a snapshot,
        which the pipeline builds from the checkpoint (and a rerun would too). A led set reads
        what the first set's processes wrote (that hook ends first: it is registered first)."""
        for step, out in self._led:
            if out.is_dir():
                self._report(step, out)
        self._led.clear()
        for step, out, proc in self._children:
            _, err = proc.communicate()
            if proc.returncode != 0 or not out.is_dir():
                why = (err or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
                print(
                    f"[sparks] the snapshot process of step {step} failed ({why[0]}); "
                    "its save is snapshotted from the checkpoint after training",
                    file=sys.stderr,
                )
                continue
            self._report(step, out)
        self._children.clear()

    def _report(self, step: int, out: Path) -> None:
        """Hand a snapshot another process wrote to `on_snapshot`."""
        if self.on_snapshot:
            self.on_snapshot(step, read_snapshot(out), out)


def clear_stale(d: Path, subdir: str = "circuit") -> None:
    """Remove the temporary snapshot directories a killed process left in `d` (never renamed:
    never read; the snapshot is built again)."""
    for stale in Path(d).glob(f".{subdir}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def snapshot_missing(
    saves: list[tuple[int, Path]],
    batches: list[PairBatch],
    spec: SnapshotSpec,
    *,
    dtype: str = "float32",
    on_snapshot: OnSnapshot | None = None,
    subdir: str = "circuit",
    pairs: dict | None = None,
    more_sets: Sequence[dict] = (),
) -> list[int]:
    """Snapshot, from disk, the saves `(step, checkpoint)` that have no snapshot: those of a run,
    or a snapshot process, killed before it was written. `more_sets` ({batches, subdir, spec,
    pairs, on_snapshot}): a run's other pair sets, from the same loaded model. Returns the
    steps where something was snapshotted."""
    from sparks.models.loading import load_model

    sets = [{"batches": batches, "subdir": subdir, "spec": spec, "pairs": pairs,
             "on_snapshot": on_snapshot}, *more_sets]  # fmt: skip
    done = []
    for step, ckpt in saves:
        todo = [s for s in sets if not (ckpt / s["subdir"]).exists()]
        if not todo:
            continue
        model = load_model(ckpt, dtype=dtype)  # once for all of this save's sets
        device = next(model.parameters()).device
        fingerprint = model_fingerprint(model) if len(todo) > 1 else None
        for s in todo:
            clear_stale(ckpt, s["subdir"])
            with preserved_rng():
                snap = build_or_fail(
                    model, [b.to(device) for b in s["batches"]], s["spec"], step=step,
                    fingerprint=fingerprint, pairs=s["pairs"],
                )  # fmt: skip
            save_snapshot(snap, ckpt / s["subdir"])
            if s["on_snapshot"]:
                s["on_snapshot"](step, snap, ckpt / s["subdir"])
        done.append(step)
    return done
