"""A real full filesystem: a small tmpfs mounted for the test (as root) fills during a save and
during a snapshot. Each fails in one line naming the path, nothing half-written is left, what was
written before stays valid, and the rerun after space is freed completes. A run that cannot fit is
refused before it writes anything, by the dry run and by the run itself.

If the mount is refused, the tests fail as root (CI) and are skipped, saying so, otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from sparks.circuits.snapshot import read_snapshot
from sparks.circuits.spec import SnapshotSpec
from tests.reliability.test_kills import ROOT, _config

MB = 2**20


@contextmanager
def small_fs(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` mounted at `where` for the block's duration."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        why = f"mount -t tmpfs was refused here: {done.stderr.strip() or done.returncode}"
        if os.geteuid() == 0:  # CI runs as root, where the mount works: a refusal is a failure
            pytest.fail(why)
        pytest.skip(why + " (not root; the disk-full tests run as root, as CI does)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path, leave: int) -> Path:
    """A balloon file that leaves `leave` bytes free on `fs` (another writer filling the disk)."""
    balloon = fs / "balloon"
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    with open(balloon, "ab") as f:
        os.posix_fallocate(f.fileno(), 0, max(free - leave, 0) + balloon.stat().st_size)
    return balloon


def test_a_snapshot_on_a_full_filesystem_fails_in_one_line_and_succeeds_once_space_is_freed(
    trained_run, tmp_path
):
    run = Path(trained_run.cfg.output_dir)
    args = [
        "snapshot", str(run / "stage0-sft" / "final"), "--pairs", str(run / "pairs.jsonl"),
        "--steps", "2", "--n-pairs", "8",
    ]  # fmt: skip
    with small_fs(tmp_path / "fs", 1) as fs:
        target = fs / "snap"
        balloon = fill(fs, 4096)  # room for the first small file, not for the edge table
        done = subprocess.run(
            [sys.executable, "-m", "sparks.cli", *args, "--out", str(target)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        err = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr[-2000:]
        assert err[-1].startswith(f"sparks: error: cannot write {target}: "), err[-1]
        assert err[-1].count("free disk space") == 1, err[-1]  # the advice once
        assert "No space left on device" in err[-1]
        assert sorted(p.name for p in fs.iterdir()) == ["balloon"]  # nothing half-written
        balloon.unlink()
        from sparks.circuits import snapshot_checkpoint

        snapshot_checkpoint(
            run / "stage0-sft" / "final",
            run / "pairs.jsonl",
            target,
            SnapshotSpec(steps=2, n_pairs=8),
        )
        assert read_snapshot(target).heads


def _wait_then_fill(out: Path, fs: Path, stop: threading.Event) -> None:
    """Once the base snapshot is on disk, leave 2 MB: less than the first checkpoint (12 MB)."""
    while not stop.is_set():
        if (out / "base" / "circuit").is_dir() and (out / "ledger.parquet").is_file():
            fill(fs, 2 * MB)
            return
        time.sleep(0.05)


def test_a_filesystem_that_fills_during_a_save_fails_in_one_line_and_the_rerun_completes(
    world, world_cache, tmp_path
):
    with small_fs(tmp_path / "fs", 160) as fs:
        out = fs / "full"
        cfg = _config(out, "http://127.0.0.1:9", world) | {"name": "full"}  # MLflow away: local
        cfg["evaluation"] = cfg["evaluation"] | {"enabled": False}
        (world_cache / "full.json").write_text(json.dumps(cfg))
        cmd = [sys.executable, "-m", "sparks.cli", "train", str(world_cache / "full.json")]
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        stop = threading.Event()
        filler = threading.Thread(target=_wait_then_fill, args=(out, fs, stop), daemon=True)
        filler.start()
        try:
            full = subprocess.run(
                cmd, cwd=world_cache, env=env, capture_output=True, text=True, timeout=600
            )
        finally:
            stop.set()
        last = full.stderr.strip().splitlines()[-1]
        assert full.returncode == 2, full.stderr[-3000:]
        assert last.startswith(f"sparks: error: cannot write {out / 'stage0-sft'}: "), last
        assert last.count("free disk space") == 1, last
        assert "No space left on device" in last
        # what was written before is whole; the save that failed left nothing behind
        assert read_snapshot(out / "base" / "circuit").heads
        assert set(pd.read_parquet(out / "ledger.parquet").step) == {0}
        assert not list((out / "stage0-sft").glob("checkpoint-*"))
        assert not list(out.rglob(".*.tmp-*"))
        (fs / "balloon").unlink()
        again = subprocess.run(
            cmd, cwd=world_cache, env=env, capture_output=True, text=True, timeout=600
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert set(pd.read_parquet(out / "ledger.parquet").step) == {0, 2, 4, 5, 6}


def test_a_run_that_cannot_fit_is_refused_before_it_writes(
    world, world_cache, tmp_path, monkeypatch
):
    from sparks.config import validate_config
    from sparks.run.pipeline import run_training
    from sparks.run.plan import dry_run
    from sparks.train.disk import DiskSpaceError

    with small_fs(tmp_path / "fs", 16) as fs:  # SFT's two saves alone need 28 MB
        out = fs / "small"
        cfg = validate_config(_config(out, "http://127.0.0.1:9", world) | {"name": "small"})
        plan = dry_run(cfg)
        assert any(line.startswith("  per save: weights 4.0 MB") for line in plan.lines), (
            plan.text()
        )
        (problem,) = [p for p in plan.problems if "free" in p]
        assert problem.startswith("the run's saves need up to ") and "16.0 MB is free" in problem
        assert "checkpoints.keep_weights: false" in problem
        monkeypatch.chdir(world_cache)  # where the session's world is cached
        with pytest.raises(DiskSpaceError, match="checkpoints.check_disk: false skips"):
            run_training(cfg)
        assert not out.exists()
