"""The local MLflow store survives its own creation: a store MLflow left half-migrated (killed for
real inside its migrations) is repaired by the next opener and by `sparks mlflow-sync`; a store
that holds runs keeps every row through the repair. (Kills inside sparks' own, atomic creation are
in tests/reliability/test_kills.py, within a whole run.)"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmarks.store_kills import KILLED  # MLflow creating a store in place, SIGKILLed
from sparks.cli import main
from sparks.log.store import ensure_store, store_problem
from sparks.log.tracking import Tracker


def _half_migrated(db: Path, n: int) -> None:
    r = subprocess.run(
        [sys.executable, "-c", KILLED, f"sqlite:///{db}", str(n)], capture_output=True
    )
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]


@pytest.mark.parametrize("n", [4, 19])
def test_a_store_mlflow_left_half_migrated_is_repaired(tmp_path, n):
    db = tmp_path / "mlflow.db"
    _half_migrated(db, n)
    assert "half" in store_problem(db)
    with pytest.raises(Exception, match="already exists|duplicate column"):
        MlflowClient(f"sqlite:///{db}").search_experiments()  # broken for good without sparks
    assert ensure_store(f"sqlite:///{db}") == "repaired"
    assert store_problem(db) == ""
    assert [e.name for e in MlflowClient(f"sqlite:///{db}").search_experiments()] == ["Default"]
    kept = [p for p in tmp_path.glob("mlflow.db.broken-*") if not p.name.endswith("-journal")]
    assert len(kept) == 1  # the old file is kept (with its journal, if any), not lost
    assert ensure_store(f"sqlite:///{db}") == "healthy"


def test_a_repaired_store_keeps_its_runs_and_metrics(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert ensure_store(uri) == "created"
    client = MlflowClient(uri)
    exp = client.create_experiment("kept")
    run = client.create_run(exp, run_name="r").info.run_id
    for step in range(5):
        client.log_metric(run, "circuit/heads", step * 2.0, step=step)
    client.log_param(run, "seed", "3")
    client.set_terminated(run, "FINISHED")
    # what a batch migration killed half-way leaves: a table gone, its copy under a temporary name
    with sqlite3.connect(db) as con:
        con.execute("ALTER TABLE params RENAME TO _alembic_tmp_params")
    assert "half" in store_problem(db)
    assert ensure_store(uri) == "repaired"
    client = MlflowClient(uri)
    got = client.get_run(run)
    assert got.info.status == "FINISHED" and got.data.params == {"seed": "3"}
    history = client.get_metric_history(run, "circuit/heads")
    assert [(m.step, m.value) for m in history] == [(s, s * 2.0) for s in range(5)]


def test_mlflow_sync_repairs_the_store_and_sends_what_was_kept(tmp_path, capsys):
    """An offline run's records are sent to a store that was left half-migrated meanwhile."""
    db, out = tmp_path / "mlflow.db", tmp_path / "run"
    t = Tracker("http://127.0.0.1:9", "sync", "offline", out)  # nothing listens on port 9
    t.start({"seed": 1}, {"sparks.run": "offline"})
    t.log_metrics({"loss": 1.5}, 1)
    t.log_metrics({"loss": 0.5}, 2)
    (out / "run.json").write_text(json.dumps({"name": "offline", "experiment": "sync"}))
    assert (out / "pending.jsonl").is_file()
    _half_migrated(db, 19)
    assert main(["mlflow-sync", str(out), "--uri", f"sqlite:///{db}"]) == 0
    assert "uploaded 4 pending records" in capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{db}")
    run = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    assert [m.value for m in client.get_metric_history(run, "loss")] == [1.5, 0.5]
    assert not (out / "pending.jsonl").exists()


def test_mlflow_sync_to_an_unreachable_server_is_one_line_and_keeps_the_records(tmp_path, capsys):
    out = tmp_path / "run"
    uri = "http://127.0.0.1:9"
    t = Tracker(uri, "sync", "offline", out)
    t.start({}, {})
    t.log_metrics({"loss": 1.0}, 1)
    (out / "run.json").write_text(json.dumps({"name": "offline", "experiment": "sync", "uri": uri}))
    kept = (out / "pending.jsonl").read_text()
    assert main(["mlflow-sync", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sparks: error: MLflow at http://127.0.0.1:9 did not take"), err
    assert "sparks mlflow-sync again" in err[-1]
    assert (out / "pending.jsonl").read_text() == kept
