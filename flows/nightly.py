"""Prefect flow `nightly`: the training-analysis pipeline from a config file, for schedules."""

from __future__ import annotations

from prefect import flow

from flows.train import post_train
from sparks.config import load_config


@flow(
    name="nightly",
    description="Run post-train (snapshots, evaluation, MLflow) from a YAML config file.",
)
def nightly(config_path: str = "configs/demo.yaml", output_dir: str | None = None) -> dict:
    """Load `config_path` (validated before anything starts) and run it; `output_dir` overrides the file's."""
    return post_train(load_config(config_path, output_dir=output_dir))
