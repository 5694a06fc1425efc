"""The hook on a model sharded with torch's FSDP2 (DTensor parameters), over gloo on 2 real ranks:
every rank enters the gather, the main process snapshots, and the snapshot equals the one of the
same weights on one process; a failure on the main process reaches the other rank at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from sparks.circuits import snapshot_checkpoint
from sparks.circuits.snapshot import read_snapshot
from sparks.circuits.spec import SnapshotSpec

SCRIPT = Path(__file__).with_name("fsdp2_hook.py")
ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fsdp2_sharded_model_is_gathered_and_snapshotted_on_the_main_rank(world, tmp_path):
    out = tmp_path / "fsdp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    r = subprocess.run(
        [*torchrun, "--master_port", str(_port()), str(SCRIPT), str(world.model_dir)]
        + [str(world.pairs_path), str(out)],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    main, other = (json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1))
    assert main["world_size"] == other["world_size"] == 2
    assert main["sharding"] == other["sharding"] == "fsdp"  # DTensor parameters: really sharded
    assert main["snapshots_reported"] == [1, 2] and other["snapshots_reported"] == []
    for step in (1, 2):
        sharded = read_snapshot(out / f"checkpoint-{step}" / "circuit")
        whole = snapshot_checkpoint(
            out / f"checkpoint-{step}" / "full",
            world.pairs_path,
            tmp_path / f"whole-{step}",
            SnapshotSpec(
                steps=2, top_k=40, batch_size=4, n_pairs=8, metric=sharded.settings["metric"]
            ),
            progress=False,
        )
        assert torch.allclose(sharded.edge_scores, whole.edge_scores, rtol=1e-4, atol=1e-6)
        assert sharded.heads == whole.heads
    # the main process's failure: raised there, and on the other rank as RankFailure, at once
    assert main["step3"].startswith("RuntimeError: a snapshot that fails on purpose")
    assert other["step3"].startswith("RankFailure: rank 1/2: the main process failed")
    assert other["step3_seconds"] < 60
