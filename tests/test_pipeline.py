"""What the pipeline does with a save whose snapshot failed: ledger, MLflow, and nothing stops."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from sparks.circuits.graph import Graph
from sparks.circuits.snapshot import FailedSnapshot
from sparks.config import validate_config
from sparks.pipeline import TrainingRun


def test_a_failed_snapshot_is_marked_in_the_ledger_and_mlflow(tmp_path):
    import pandas as pd

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = validate_config(
        {"output_dir": str(tmp_path / "out"), "tracking": {"mlflow_uri": uri, "experiment": "f"}}
    )
    run = TrainingRun(cfg)
    run.out.mkdir(parents=True)
    run.tracker.start({}, {})
    run.logged_steps = set()
    g = Graph(2, 2, 1)
    reason = "the metric (batch 1, IG alphas [1.0]) is not finite (NaN or inf): the model diverged"
    for step in (0, 5):
        run.on_snapshot(step, FailedSnapshot(step, g, reason), tmp_path / f"s{step}")
    run.tracker.end()
    ledger = pd.read_parquet(run.out / "ledger.parquet")
    assert ledger.failed.all() and not ledger.in_circuit.any()
    client = MlflowClient(uri)
    hist = client.get_metric_history(run.tracker.run_id, "circuit/failed")
    assert sorted((m.step, m.value) for m in hist) == [(0, 1.0), (5, 1.0)]
    tags = client.get_run(run.tracker.run_id).data.tags
    assert tags["sparks.snapshot_failed.step-5"] == reason
