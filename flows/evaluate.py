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
    from sparks.evaluate.benchmarks import load_benchmark
    from sparks.evaluate.evaluate import evaluate_model
    from sparks.evaluate.generate import SamplingSpec

    ev = config.evaluation
    world = None
    if "world" in ev.benchmarks and "world" not in ev.sources:
        from sparks.config import WorldSettings
        from sparks.world.build import world_for

        world = world_for(WorldSettings())
    problems = {
        b: load_benchmark(b, source=ev.sources.get(b), world=world, limit=ev.limit)
        for b in ev.benchmarks
    }
    spec = SamplingSpec(
        n=ev.n,
        temperature=ev.temperature,
        top_p=ev.top_p,
        max_tokens=ev.max_tokens,
        seed=ev.seed,
        tensor_parallel_size=ev.tensor_parallel_size,
    )
    return {
        b: r.metrics
        for b, r in evaluate_model(model_dir, problems, spec, backend=ev.backend).items()
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
