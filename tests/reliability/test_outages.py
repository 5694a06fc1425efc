"""Servers lost mid-run and outputs that cannot be written, for real.

- MLflow: a real tracking server is stopped while a run trains and started again later; training
  goes on, and what was logged while it was away arrives once, with nothing logged twice.
(A full disk: tests/reliability/test_disk_full.py, on a real filesystem that fills.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from tests.reliability.test_kills import KILLER, ROOT, _config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_server(data: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{data}/mlflow.db",
            "--default-artifact-root",
            str(data / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the MLflow server did not start")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the server and its workers, at once, as a crash would
    proc.wait(timeout=30)


def _ledger_steps(out: Path) -> set[int]:
    try:
        return set(pd.read_parquet(out / "ledger.parquet").step)
    except (OSError, ValueError):
        return set()


def _wait(cond, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_mlflow_lost_mid_run_and_back_gets_everything_once(world, world_cache):
    cwd, port = world_cache, _free_port()
    data = cwd / "mlflow-outage"
    data.mkdir()
    uri = f"http://127.0.0.1:{port}"
    server = _mlflow_server(data, port)
    out = cwd / "outage"
    cfg = _config(out, uri, world) | {"name": "outage"}
    (cwd / "outage.json").write_text(json.dumps(cfg))
    run = subprocess.Popen(
        [sys.executable, str(KILLER), str(cwd / "outage.json")],
        cwd=cwd,
        env=os.environ | {"PYTHONPATH": str(ROOT), "SPARKS_MLFLOW_RETRY_SECONDS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: 0 in _ledger_steps(out), run, 300, "the base snapshot")
        _stop(server)  # lost: training must go on
        _wait(lambda: {2, 4} <= _ledger_steps(out), run, 300, "two SFT saves")
        server = _mlflow_server(data, port)  # back, same store
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
        _stop(server)  # what it acknowledged must be in its store: read that, without a server
    assert run.returncode == 0, stderr[-3000:]
    assert "training goes on" in stderr and "answers again" in stderr, stderr[-2000:]
    assert not (out / "pending.jsonl").exists(), f"something was never sent:\n{stderr[-2000:]}"
    client = MlflowClient(f"sqlite:///{data}/mlflow.db")
    rid = json.loads((out / "mlflow_run.json").read_text())["run_id"]

    def steps(key):
        return sorted(m.step for m in client.get_metric_history(rid, key))

    assert steps("circuit/heads") == [0, 2, 4, 5, 6]  # the saves made while it was away too
    assert steps("loss") == list(range(1, 7))
    for key in client.get_run(rid).data.metrics:
        counts = Counter(m.step for m in client.get_metric_history(rid, key))
        assert max(counts.values()) == 1, (key, counts)
