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
    g = Graph(2, 2, 1)
    reason = "the metric (batch 1, IG alphas [1.0]) is not finite (NaN or inf): the model diverged"
    for step in (0, 5):
        run.recorder.on_snapshot(step, FailedSnapshot(step, g, reason), tmp_path / f"s{step}")
    run.tracker.end()
    ledger = pd.read_parquet(run.out / "ledger.parquet")
    assert ledger.failed.all() and not ledger.in_circuit.any()
    client = MlflowClient(uri)
    hist = client.get_metric_history(run.tracker.run_id, "circuit/failed")
    assert sorted((m.step, m.value) for m in hist) == [(0, 1.0), (5, 1.0)]
    tags = client.get_run(run.tracker.run_id).data.tags
    assert tags["sparks.snapshot_failed.step-5"] == reason


def test_a_non_world_model_with_the_default_benchmarks_builds_numbers_pairs_from_the_world(
    world, foreign_model, tmp_path, monkeypatch
):
    """Mode auto on a non-world model means numbers pairs from the evaluation benchmarks, here
    the default `world`: prepare must build the world's tasks for them (it once did not)."""
    import json

    from sparks.models import load_tokenizer, tokenizer_fingerprint

    monkeypatch.setattr("sparks.pipeline.world_for", lambda s, cache_root=None: world)
    train = tmp_path / "train.jsonl"
    train.write_text(world.tasks_path("train").read_text())
    cfg = validate_config(
        {
            "output_dir": str(tmp_path / "out"),
            "model": {"path": str(foreign_model)},
            "data": {"train": str(train)},
            "snapshot": {"n_pairs": 4, "pairs": {"n": 4}},
            "tracking": {"mlflow_uri": f"sqlite:///{tmp_path}/m.db", "experiment": "p"},
        }
    )
    assert cfg.resolved_pairs() == ("numbers", ["world"], None)
    run = TrainingRun(cfg)
    run.prepare()
    info = run.build_pairs()
    run.tracker.end()
    assert info["pairs"] == 4 and info["metric"] == "kl"
    pairs = [json.loads(line) for line in open(info["path"])]
    assert {p["tokenizer"] for p in pairs} == {tokenizer_fingerprint(load_tokenizer(foreign_model))}
    assert all(p["problem_id"].startswith("world-") for p in pairs)
