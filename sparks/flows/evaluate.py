"""Prefect flow `evaluate-checkpoints`: benchmark existing checkpoint directories (or every save of
a run directory), one MLflow run. The evaluations fan out over `cluster` (flows/cluster.py); the
metrics are logged from the flow, in step order, once they are all back."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from sparks.config import ClusterSettings, EvaluationSettings, TrackingSettings
from sparks.flows.cluster import resources, task_runner
from sparks.train.saves import is_model_dir, is_run_dir, run_saves
from sparks.train.writers import writing


class EvaluateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoints: list[str] = Field(
        min_length=1,
        description="Checkpoint directories, evaluated in order, or run directories (every save, "
        "at its step).",
    )
    steps: list[int] | None = Field(
        None, description="Step to log each checkpoint at (default 0, 1, 2, ...)."
    )
    name: str = Field("evaluate", min_length=1, description="MLflow run name.")
    evaluation: EvaluationSettings = EvaluationSettings()
    tracking: TrackingSettings = TrackingSettings()
    cluster: ClusterSettings = ClusterSettings()


def targets(config: EvaluateConfig) -> list[tuple[str, int]]:
    """(checkpoint, step) to evaluate: run directories give their saves at their global steps."""
    if config.steps is not None and len(config.steps) != len(config.checkpoints):
        raise ValueError(
            f"steps has {len(config.steps)} entries for {len(config.checkpoints)} checkpoints: "
            "give one step per checkpoint, or none"
        )
    found = []
    for i, c in enumerate(config.checkpoints):
        if is_run_dir(Path(c)):
            for step, p in run_saves(Path(c)):
                if is_model_dir(p):
                    found.append((str(p), step))
                else:  # retention removed its weights: its run evaluation (if any) is in eval/
                    print(f"[sparks] {p}: weights removed by checkpoint retention, not evaluated")
        else:
            found.append((c, config.steps[i] if config.steps else i))
    return found


@task(name="evaluate-checkpoint", task_run_name="evaluate-{model_dir}", cache_policy=NO_CACHE)
def evaluate_one(model_dir: str, evaluation: EvaluationSettings) -> dict:
    from sparks.evaluate.runner import benchmarks_for, evaluate_model

    problems, spec = benchmarks_for(evaluation), evaluation.sampling()
    results = evaluate_model(
        model_dir, problems, spec, backend=evaluation.backend, overlong=evaluation.overlong
    )
    return {b: r.metrics for b, r in results.items()}


@flow(name="evaluate-all", description="Evaluate checkpoints, fanned out over a cluster.")
def evaluate_all(
    model_dirs: list[str], evaluation: EvaluationSettings, cluster: ClusterSettings
) -> list[dict]:
    with resources(cluster):
        futures = [evaluate_one.submit(c, evaluation) for c in model_dirs]
    return [f.result() for f in futures]


@flow(
    name="evaluate-checkpoints",
    description="Evaluate checkpoint directories on AIME'24 / AMC23 / world.",
)
def evaluate_checkpoints(config: EvaluateConfig) -> dict:
    from sparks.log.tracking import Tracker

    found = targets(config)
    tracker = Tracker(
        config.tracking.mlflow_uri,
        config.tracking.experiment,
        config.name,
        Path(".sparks") / "evaluate" / config.name,
    )
    tracker.start(
        {"checkpoints": ",".join(config.checkpoints)}, {"sparks.kind": "evaluate-checkpoints"}
    )
    run = evaluate_all.with_options(task_runner=task_runner(config.cluster))
    with writing(config.checkpoints, role="evaluate-checkpoints"):  # eval/ goes into the saves
        results = run([c for c, _ in found], config.evaluation, config.cluster)
    out = {}
    for (ckpt, step), metrics in zip(found, results, strict=True):
        out[ckpt] = metrics
        tracker.log_metrics(
            {f"eval/{b}/{k}": v for b, m in metrics.items() for k, v in m.items()}, step
        )
    tracker.end()
    return out
