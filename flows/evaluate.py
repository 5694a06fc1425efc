"""Prefect flow `evaluate-checkpoints`: benchmark existing checkpoint directories, one MLflow run."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from sparks.config import EvaluationSettings, TrackingSettings


class EvaluateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoints: list[str] = Field(
        min_length=1, description="Checkpoint directories, evaluated in order."
    )
    steps: list[int] | None = Field(
        None, description="Step to log each checkpoint at (default 0, 1, 2, ...)."
    )
    name: str = Field("evaluate", min_length=1, description="MLflow run name.")
    evaluation: EvaluationSettings = EvaluationSettings()
    tracking: TrackingSettings = TrackingSettings()


@task(name="evaluate-checkpoint", task_run_name="evaluate-{model_dir}", cache_policy=NO_CACHE)
def evaluate_one(model_dir: str, config: EvaluateConfig) -> dict:
    from sparks.evaluate.evaluate import benchmarks_for, evaluate_model, sampling_for

    ev = config.evaluation
    problems, spec = benchmarks_for(ev), sampling_for(ev)
    return {
        b: r.metrics
        for b, r in evaluate_model(
            model_dir, problems, spec, backend=ev.backend, overlong=ev.overlong
        ).items()
    }


@flow(
    name="evaluate-checkpoints",
    description="Evaluate checkpoint directories on AIME'24 / AMC23 / world.",
)
def evaluate_checkpoints(config: EvaluateConfig) -> dict:
    from pathlib import Path

    from sparks.log.tracking import Tracker

    steps = config.steps or list(range(len(config.checkpoints)))
    tracker = Tracker(
        config.tracking.mlflow_uri,
        config.tracking.experiment,
        config.name,
        Path(".sparks") / "evaluate" / config.name,
    )
    tracker.start(
        {"checkpoints": ",".join(config.checkpoints)}, {"sparks.kind": "evaluate-checkpoints"}
    )
    out = {}
    for step, ckpt in zip(steps, config.checkpoints, strict=True):
        out[ckpt] = evaluate_one(ckpt, config)
        tracker.log_metrics(
            {f"eval/{b}/{k}": v for b, m in out[ckpt].items() for k, v in m.items()}, step
        )
    tracker.end()
    return out
