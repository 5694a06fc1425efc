"""Prefect flow `compare`: runs and checkpoints with a common base, as one report in MLflow.

The form takes a CompareConfig: the runs (run directories, snapshotted checkpoints, mlflow:RUN_ID),
an optional base, the stability threshold, an optional think on/off section, and where the report
goes. The steps are the library's (`sparks.analysis.compare`); think on/off snapshots and evaluates
a model twice, the other steps only read what runs already wrote.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from sparks.analysis import compare as lib
from sparks.config import CompareConfig


@task(name="load-runs", cache_policy=NO_CACHE)
def load_runs(config: CompareConfig):
    return lib.load(config)


@task(name="think-on-off", cache_policy=NO_CACHE)
def think_on_off(config: CompareConfig):
    return lib.think(config)


@task(name="analyse", cache_policy=NO_CACHE)
def analyse(config: CompareConfig, sources, think):
    return lib.build(config, sources, think)


@task(name="publish-report", cache_policy=NO_CACHE)
def publish(config: CompareConfig, report) -> dict:
    return lib.publish(config, report)


@flow(
    name="compare",
    description="Emergent heads, activation frequency, cohorts, E scores, dynamics, retention and "
    "churn (and think on/off) over runs with a common base: one report, logged to MLflow.",
)
def compare(config: CompareConfig) -> dict:
    sources = load_runs(config)  # fails fast on a bad source, before any snapshot
    return publish(config, analyse(config, sources, think_on_off(config)))
