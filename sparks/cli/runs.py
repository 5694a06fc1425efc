"""Runs: `run` (the post-train flow, or its dry run), `train` (without Prefect, on every rank of
a launch), `demo` (the main job on the embedded default), `stop`, `mlflow-sync`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from sparks.cli.app import app
from sparks.cli.options import number


@app.command(help="run the post-train flow on a config (or check it offline with --dry-run)")
def run(
    config: str = typer.Argument(
        ..., metavar="CONFIG", help="a YAML run config, e.g. configs/*.yaml"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and print the plan; run nothing"),
    out: str | None = typer.Option(None, "--out", help="output directory (default: the config's)"),
    gpu_memory: float = typer.Option(
        80.0,
        "--gpu-memory",
        callback=number(gt=0),
        help="GPU size in GB the plan's estimates assume",
    ),
) -> None:
    from sparks.config import load_config

    cfg = load_config(config, output_dir=out)
    if dry_run:
        from sparks.run.plan import dry_run as plan_run

        plan = plan_run(cfg, gpu_gb=gpu_memory)
        print(plan.text())
        if plan.problems:
            raise ValueError(
                f"{config}: {len(plan.problems)} problem(s) would stop this run: {plan.problems[0]}"
            )
        print(f"dry run of {config}: everything that can be checked offline is in order")
        return
    from sparks.flows.engine import run_config

    run_config(cfg)


@app.command(
    help="run a config without Prefect, on this process or on every rank of `accelerate launch` "
    "/ `torchrun` (see configs/accelerate/)"
)
def train(
    config: str = typer.Argument(..., metavar="CONFIG"),
    stage: int | None = typer.Option(
        None,
        "--stage",
        metavar="I",
        callback=number(ge=0),
        help="train only stage I (what a flow's launched training step runs); inputs must exist",
    ),  # fmt: skip
) -> None:
    from sparks.config import load_config
    from sparks.train.launch import launched

    cfg = load_config(config)
    if not launched():  # a launched rank's checks were the launcher's
        from sparks.run.plan import dry_run

        if problems := dry_run(cfg).problems:
            raise ValueError(f"{problems[0]} (nothing was started or written)")
    from sparks.run.pipeline import run_training, terminate_on_sigterm

    terminate_on_sigterm()  # `sparks stop`, a scheduler's kill: MLflow's run ends KILLED
    result = run_training(cfg, stage=stage)
    if os.environ.get("RANK", "0") == "0":  # one summary per launch, from the main process
        print(json.dumps(result, indent=2))
    from sparks.train.ranks import leave_process_groups

    leave_process_groups()


@app.command(help="run the main job on the embedded default")
def demo(
    config: str = typer.Option("configs/demo.yaml", "--config"),
    out: Path = typer.Option(Path("runs/demo"), "--out"),
) -> None:
    from sparks.flows.engine import run_demo

    run_demo(config, out)


@app.command(
    help="end every process writing a run directory: the run, its launcher, and ranks a killed "
    "launcher left running"
)
def stop(
    run: Path = typer.Argument(..., metavar="OUTPUT_DIR"),
    grace: float = typer.Option(
        15.0, "--grace", callback=number(ge=0), help="seconds between SIGTERM and SIGKILL"
    ),
) -> None:
    from sparks.train.writers import stop as stop_writers

    if not run.is_dir():
        raise FileNotFoundError(f"{run} does not exist: give the output directory of a run")
    ended = stop_writers(run, grace=grace)
    if not ended:
        print(f"nothing is writing {run}")
        return
    print(f"stopped {len(ended)} process(es) writing {run}: {'; '.join(ended)}")
    print("a rerun with the same config resumes from the last save")


@app.command("mlflow-sync", help="upload what a run kept locally while MLflow was unreachable")
def mlflow_sync(
    output_dir: Path = typer.Argument(..., metavar="OUTPUT_DIR"),
    uri: str | None = typer.Option(None, "--uri", help="tracking URI (default: the run's own)"),
) -> None:
    from sparks.log.tracking import upload_pending

    n = upload_pending(output_dir, uri)
    print(f"uploaded {n} pending records from {output_dir} to MLflow")
