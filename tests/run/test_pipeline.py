"""What the pipeline does with a save whose snapshot failed: ledger, MLflow, and nothing stops."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from sparks.circuits.graph import Graph
from sparks.circuits.snapshot import FailedSnapshot
from sparks.circuits.spec import SnapshotSpec
from sparks.config import validate_config
from sparks.run.pipeline import TrainingRun


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

    from sparks.models.loading import load_tokenizer, tokenizer_fingerprint

    monkeypatch.setattr("sparks.run.pipeline.world_for", lambda s, cache_root=None: world)
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


def test_auto_steps_are_recorded_per_save_in_the_snapshot_ledger_and_mlflow(
    world, tokenizer, batches, tmp_path
):
    """`snapshot.steps: auto`: the step count chosen, the completeness error reached and whether
    the cap was hit go into the snapshot's settings, the ledger and MLflow, save by save."""
    import pandas as pd

    from sparks.circuits.snapshot import build_snapshot, read_snapshot, save_snapshot
    from sparks.world.model import TinyModelSpec, build_model

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = validate_config(
        {
            "output_dir": str(tmp_path / "out"),
            "snapshot": {"steps": "auto", "steps_tolerance": 0.05, "max_steps": 27},
            "tracking": {"mlflow_uri": uri, "experiment": "auto"},
        }
    )
    run = TrainingRun(cfg)
    run.out.mkdir(parents=True)
    run.tracker.start({}, {})
    # a random network of the world's shape converges within the cap; the pretrained base needs
    # more than 32 steps for 5 % on one batch (what is recorded is under test here, not that)
    model = build_model(TinyModelSpec(), tokenizer, seed=0).eval()
    s = cfg.snapshot
    for step, tol in ((0, s.steps_tolerance), (3, 1e-9)):  # the second can only stop at the cap
        spec = SnapshotSpec(top_k=30, steps_tolerance=tol, max_steps=s.max_steps)
        snap = build_snapshot(model, batches[:1], spec, step=step, n_boot=5)
        save_snapshot(snap, tmp_path / f"s{step}")
        run.recorder.on_snapshot(step, read_snapshot(tmp_path / f"s{step}"), tmp_path / f"s{step}")
    run.tracker.end()
    first, capped = read_snapshot(tmp_path / "s0"), read_snapshot(tmp_path / "s3")
    assert (
        first.settings["steps_auto"]
        and first.settings["steps"] == first.settings["steps_tried"][-1]
    )
    assert capped.settings["steps_capped"] and capped.settings["steps"] <= 27
    ledger = pd.read_parquet(run.out / "ledger.parquet").groupby("step").first()
    assert ledger.ig_steps.tolist() == [first.settings["steps"], capped.settings["steps"]]
    assert ledger.completeness_error.tolist() == pytest.approx(
        [first.completeness_error, capped.completeness_error]
    )
    client = MlflowClient(uri)
    hist = {
        k: [(m.step, m.value) for m in client.get_metric_history(run.tracker.run_id, k)]
        for k in ("circuit/ig_steps", "circuit/ig_capped")
    }
    assert hist["circuit/ig_steps"] == [(0, first.settings["steps"]), (3, capped.settings["steps"])]
    assert hist["circuit/ig_capped"] == [(0, 0.0), (3, 1.0)]
