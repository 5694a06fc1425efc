"""`make demo`: the main job on the embedded default.

Runs the Prefect flow `post-train` on configs/demo.yaml: the embedded world's tiny Qwen2 model is
post-trained with SFT then GRPO (TRL), with a circuit snapshot at every save, all logged to MLflow
under ./mlflow/data. Prints where everything went and how to browse it.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparks.config import load_config


def prefect_env(root: Path = Path(".")) -> None:
    """Project-local Prefect settings (no analytics; state under .prefect/) unless set already."""
    os.environ.setdefault("PREFECT_HOME", str((root / ".prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def run_demo(config_path: str | Path, out_dir: Path) -> dict:
    """Run the demo described by `config_path`, writing into `out_dir`."""
    return run_config(load_config(config_path, output_dir=str(out_dir)))


def run_config(cfg) -> dict:
    """Run the Prefect flow `post-train` on a validated RunConfig and print where things went."""
    prefect_env()
    from flows.train import post_train

    print(
        f"[sparks] post-train flow: {' then '.join(s.method for s in cfg.stages)} on {cfg.model.path}, "
        f"outputs in {cfg.output_dir}"
    )
    summary = post_train(cfg)
    store = summary["mlflow_uri"]
    print(
        f"[sparks] done in {summary['wall_seconds']}s ({summary['snapshot_seconds']}s in circuit snapshots), "
        f"{summary['saves']} snapshots"
    )
    print(f"[sparks] final circuit heads: {', '.join(summary['final_heads']) or 'none'}")
    print(
        f"[sparks] emergent heads (not in the base model's circuit): {', '.join(summary['emergent']) or 'none'}"
    )
    for step, per_bench in summary["pass@1"].items():
        scores = ", ".join(f"{b} pass@1 {v:.3f}" for b, v in per_bench.items())
        print(f"[sparks] evaluation at step {step}: {scores}")
    print(
        f"[sparks] ledger: {cfg.output_dir}/ledger.parquet; figures: {cfg.output_dir}/figures/trajectory.png"
    )
    if summary["offline"]:
        print(
            f"[sparks] MLflow was unreachable: upload later with  sparks mlflow-sync {cfg.output_dir}"
        )
    else:
        print(
            f"[sparks] browse in MLflow:  .venv/bin/mlflow ui --backend-store-uri {store} --port 5000"
        )
        print(
            f"[sparks]   then open http://127.0.0.1:5000/#/experiments (run {summary['run_id']}, "
            "metrics head/L*H* and circuit/*, artifacts figures/ and snapshots/)"
        )
    return summary
