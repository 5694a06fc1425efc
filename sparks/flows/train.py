"""Prefect flow `post-train`: post-train a model with TRL and snapshot its circuit at every save.

Thin by design: each task is one step of `sparks.run.pipeline.TrainingRun`; the parameter is the typed
RunConfig, which the Prefect UI renders as a validated form. Training tasks are never retried
(not idempotent); a rerun with the same output_dir resumes from the last checkpoint instead.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from sparks.config import RunConfig
from sparks.run.pipeline import TrainingRun
from sparks.train.writers import release


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(run: TrainingRun) -> dict:
    return run.prepare()


@task(name="build-pairs", cache_policy=NO_CACHE)
def build_pairs(run: TrainingRun) -> dict:
    # Built once per run for the model's tokenizer; a rerun finds output_dir/pairs.jsonl.
    return run.build_pairs()


@task(name="base-snapshot", cache_policy=NO_CACHE)
def base_snapshot(run: TrainingRun) -> list[str]:
    return run.base_snapshot()


@task(name="train-stage", task_run_name="train-stage{i}-{method}", cache_policy=NO_CACHE)
def train_stage(run: TrainingRun, i: int, method: str) -> dict:
    return run.train_stage(i)


@task(
    name="evaluate-checkpoints", task_run_name="evaluate-{label}", cache_policy=NO_CACHE, retries=1
)
def evaluate_checkpoints(run: TrainingRun, i: int | None, label: str) -> dict:
    # Idempotent (done checkpoints are skipped), so one retry is safe, e.g. after an engine hiccup.
    return run.evaluate_checkpoints(i)


@task(name="summarise", cache_policy=NO_CACHE)
def summarise(run: TrainingRun) -> dict:
    return run.summarise()


@flow(
    name="post-train",
    description="SFT / distill / GRPO with TRL; a circuit snapshot at every save; heads in MLflow.",
)
def post_train(config: RunConfig = RunConfig()) -> dict:
    """Train `config`'s stages in order and track attention heads across every save."""
    run = TrainingRun(config)
    try:
        return _stages(run, config)
    except BaseException as e:  # a cancel from the UI arrives as Prefect's TerminationSignal
        run.end_early(e)  # MLflow's run KILLED or FAILED, with the reason; summary.json
        raise
    finally:
        release(run.out)  # the next run (or a retry) may write output_dir


def _stages(run: TrainingRun, config: RunConfig) -> dict:
    prepare(run)
    build_pairs(run)
    base_snapshot(run)
    running = []  # evaluations going on beside training (evaluation.concurrent)

    def evaluate(i: int | None, label: str) -> None:
        if config.evaluation.concurrent:
            running.append(evaluate_checkpoints.submit(run, i, label))
        else:
            evaluate_checkpoints(run, i, label)

    evaluate(None, "base")
    for i, stage in enumerate(config.stages):
        train_stage(run, i, stage.method)
        evaluate(i, f"stage{i}-{stage.method}")
    for future in running:
        future.result()  # every evaluation is done (and logged) before the summary; raises if one failed
    return summarise(run)
