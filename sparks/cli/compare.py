"""`sparks compare`: runs and checkpoints against a common base, as one report in MLflow."""

from __future__ import annotations

from typing import Any

import typer

from sparks.cli.app import app
from sparks.cli.options import field_option
from sparks.config import CompareConfig


@app.command(
    help="compare runs and checkpoints with a common base: emergent heads, frequency, cohorts, "
    "E scores, dynamics, retention/churn (and think on/off) as one report in MLflow"
)
def compare(
    sources: list[str] | None = typer.Argument(
        None,
        metavar="RUN_OR_CHECKPOINT...",
        help="run directories (each stage counts as a run), snapshotted checkpoints, mlflow:RUN_ID",
    ),
    base: str | None = typer.Option(
        None, "--base", metavar="MODEL", help="the common base (checkpoint with circuit/)"
    ),
    out: str | None = typer.Option(
        None, "--out", metavar="DIR", help="the report goes to DIR/report/"
    ),
    stability: float | None = field_option(
        CompareConfig,
        "stability",
        "--stability",
        default=None,
        help="stability a head needs to count as stable (default: the config's, else 0.8)",
    ),  # fmt: skip
    name: str | None = typer.Option(None, "--name", help="report (and MLflow run) name"),
    config: str | None = typer.Option(
        None, "--config", help="a compare config (e.g. configs/qwen3-8b-think.yaml)"
    ),
    experiment: str | None = typer.Option(
        None, "--experiment", help="MLflow experiment (sparks-compare)"
    ),
    mlflow_uri: str | None = typer.Option(None, "--mlflow-uri", help="MLflow tracking URI"),
) -> None:
    from sparks.config import load_config, validate_config

    over = {
        "runs": sources or None,
        "base": base,
        "output_dir": out,
        "stability": stability,
        "name": name,
    }
    if config:
        cfg = load_config(config, model=CompareConfig, **over)
    else:
        if not out:
            raise ValueError("sparks compare needs --out DIR (where the report goes)")
        raw: dict[str, Any] = {k: v for k, v in over.items() if v is not None}
        if experiment or mlflow_uri:
            raw["tracking"] = {"experiment": experiment or "sparks-compare"} | (
                {"mlflow_uri": mlflow_uri} if mlflow_uri else {}
            )
        cfg = validate_config(raw, source="sparks compare", model=CompareConfig)
    from sparks.analysis.compare import run_compare
    from sparks.flows.engine import print_comparison

    print_comparison(run_compare(cfg))
