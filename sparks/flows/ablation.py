"""Prefect flow `ablation-study`: a model evaluated with and without a head set, side by side."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from sparks.config import AblationConfig
from sparks.studies.ablation import resolve_heads, run_ablation


@task(name="resolve-heads", cache_policy=NO_CACHE)
def heads_of(config: AblationConfig) -> list[str]:
    return resolve_heads(config)


@task(name="ablate-and-evaluate", cache_policy=NO_CACHE)
def ablate_and_evaluate(config: AblationConfig) -> dict:
    return run_ablation(config)


@flow(
    name="ablation-study",
    description="Scale (0 = ablate) a head set and compare benchmark accuracy in MLflow.",
)
def ablation_study(config: AblationConfig) -> dict:
    """Evaluate `config.model` as it is and with `config`'s heads scaled by each of `config.scales`."""
    heads_of(config)  # fails fast, before any checkpoint is written
    return ablate_and_evaluate(config)
