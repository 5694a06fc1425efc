"""The `post-train` flow for real: SFT then GRPO on the embedded world, snapshots, MLflow, resume."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from sparks.log.tracking import upload_pending
from tests.conftest import run_config as _config


@pytest.fixture(scope="module")
def finished(trained_run):
    return trained_run.cfg, trained_run.summary, trained_run.client


SAVES = [0, 2, 4, 5, 6, 7, 8]  # the base, SFT saves at 2 and 4, GRPO saves at 5 to 8


def _steps(client, run_id, key):
    return [m.step for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_checkpoints_and_snapshots_at_every_save(finished):
    cfg, summary, _ = finished
    out = summary["output_dir"]
    from pathlib import Path

    out = Path(out)
    assert (out / "base" / "circuit" / "snapshot.json").is_file()
    # evaluation.every 2: every second save of each stage is evaluated
    for stage, steps, evaluated in (
        ("stage0-sft", (2, 4), (4,)),
        ("stage1-grpo", (1, 2, 3, 4), (2, 4)),
    ):
        for s in steps:
            assert (out / stage / f"checkpoint-{s}" / "model.safetensors").is_file()
            # default retention: every save keeps its weights; only the newest its optimizer state
            newest = s == steps[-1]
            assert (out / stage / f"checkpoint-{s}" / "optimizer.pt").is_file() == newest
            assert (out / stage / f"checkpoint-{s}" / "rng_state.pth").is_file() == newest
            assert (out / stage / f"checkpoint-{s}" / "circuit" / "edges.parquet").is_file()
            has_eval = (out / stage / f"checkpoint-{s}" / "eval" / "world.parquet").is_file()
            assert has_eval == (s in evaluated), (stage, s)
        assert (out / stage / "final" / "model.safetensors").is_file()
    assert summary["saves"] == 7 and not summary["offline"]
    assert (out / "figures" / "trajectory.png").stat().st_size > 10_000
    import pandas as pd

    ledger = pd.read_parquet(out / "ledger.parquet")
    assert sorted(ledger.step.unique()) == [0, 2, 4, 5, 6, 7, 8]


def test_mlflow_has_trainer_and_head_metrics_on_one_step_axis(finished):
    cfg, summary, client = finished
    rid = summary["run_id"]
    assert _steps(client, rid, "circuit/heads") == SAVES
    assert _steps(client, rid, "circuit/faithfulness") == SAVES
    assert _steps(client, rid, "circuit/completeness_error") == SAVES
    assert _steps(client, rid, "head/L0H0") == SAVES
    assert _steps(client, rid, "loss")[:4] == [1, 2, 3, 4]  # SFT
    assert _steps(client, rid, "reward") == [5, 6, 7, 8]  # GRPO continues the axis
    assert _steps(client, rid, "eval/world/pass_at_1") == [0, 4, 6, 8]  # base, every 2nd save
    assert _steps(client, rid, "eval/world/pass_at_2") == [0, 4, 6, 8]
    for key in ("circuit/emergent", "circuit/activated", "circuit/pruned", "reward_std"):
        assert client.get_metric_history(rid, key), key
    run = client.get_run(rid)
    assert run.data.params["stages.1.method"] == "grpo" and run.data.tags["method"] == "sft+grpo"
    arts = {a.path for a in client.list_artifacts(rid)}
    assert {"figures", "snapshots", "ledger.json", "eval"} <= arts
    assert {a.path for a in client.list_artifacts(rid, "snapshots/step-6")} >= {
        "snapshots/step-6/circuit",
        "snapshots/step-6/heatmap-step6.png",
    }


def test_rerun_resumes_without_redoing_snapshots(finished, world, monkeypatch):
    from pathlib import Path

    from sparks.flows.train import post_train

    cfg, summary, client = finished
    monkeypatch.chdir(Path(cfg.output_dir).parent)
    monkeypatch.setattr("sparks.run.pipeline.world_for", lambda s, cache_root=None: world)
    out = Path(summary["output_dir"])
    done = out / "stage0-sft" / "checkpoint-2" / "circuit" / "snapshot.json"
    before = done.stat().st_mtime_ns
    # as if killed while snapshotting the GRPO stage's last save: its snapshot is half-written
    # (only a temporary directory) and the stage's final model was never saved
    last = out / "stage1-grpo" / "checkpoint-4"
    shutil.rmtree(last / "circuit")
    (last / ".circuit.tmp-0badc0de").mkdir()
    shutil.rmtree(out / "stage1-grpo" / "final")
    again = post_train(cfg)
    assert again["run_id"] == summary["run_id"], "the same MLflow run continues"
    assert done.stat().st_mtime_ns == before, "finished snapshots are not redone"
    assert (last / "circuit" / "snapshot.json").is_file() and not list(last.glob(".circuit.tmp-*"))
    assert (out / "stage1-grpo" / "final" / "model.safetensors").is_file()
    assert _steps(client, summary["run_id"], "circuit/heads") == SAVES, "no step logged twice"
    assert _steps(client, summary["run_id"], "reward") == [5, 6, 7, 8]
    assert _steps(client, summary["run_id"], "eval/world/pass_at_1") == [0, 4, 6, 8]


def test_unreachable_mlflow_does_not_stop_training(
    prefect_server, world, tmp_path, monkeypatch, capfd
):
    from sparks.flows.train import post_train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sparks.run.pipeline.world_for", lambda s, cache_root=None: world)
    cfg = _config(tmp_path, world, "http://127.0.0.1:9", name="offline")
    cfg = cfg.model_copy(
        update={
            "stages": cfg.stages[:1],
            "evaluation": cfg.evaluation.model_copy(update={"enabled": False}),
        }
    )
    summary = post_train(cfg)
    assert summary["offline"] and summary["saves"] == 3
    err = capfd.readouterr().err
    assert err.count("is unreachable; training goes on") == 1
    pending = tmp_path / "offline" / "pending.jsonl"
    kinds = {json.loads(line)["kind"] for line in pending.read_text().splitlines()}
    assert {"params", "metrics", "artifact", "table"} <= kinds
    uri = f"sqlite:///{tmp_path}/later.db"
    assert upload_pending(tmp_path / "offline", uri) > 10
    client = MlflowClient(uri)
    rid = json.loads((tmp_path / "offline" / "mlflow_run.json").read_text())["run_id"]
    assert _steps(client, rid, "circuit/heads") == [0, 2, 4]


def test_concurrent_evaluation_runs_beside_training_and_logs_at_each_save(
    prefect_server, world, tmp_path, monkeypatch
):
    """evaluation.concurrent: the base model's vLLM evaluation overlaps stage 0's training."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from sparks.flows.train import post_train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sparks.run.pipeline.world_for", lambda s, cache_root=None: world)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(tmp_path, world, uri, name="conc")
    cfg = cfg.model_copy(
        update={
            "stages": [cfg.stages[0].model_copy(update={"max_steps": 2})],
            "evaluation": cfg.evaluation.model_copy(
                update={"backend": "vllm", "concurrent": True, "every": 1, "n": 1, "limit": 4}
            ),
        }
    )
    state = post_train(cfg, return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    client = MlflowClient(uri)
    assert _steps(client, summary["run_id"], "eval/world/pass_at_1") == [0, 2]
    with get_client(sync_client=True) as c:
        runs = c.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    span = {r.name: (r.start_time, r.end_time) for r in runs}
    (base_start, base_end), (train_start, train_end) = (
        span["evaluate-base"],
        span["train-stage0-sft"],
    )
    assert base_start < train_end and train_start < base_end, span  # the two overlapped
    (summary_start,) = [v[0] for k, v in span.items() if k.startswith("summarise")]
    assert summary_start >= max(base_end, span["evaluate-stage0-sft"][1])
