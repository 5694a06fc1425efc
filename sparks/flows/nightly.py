"""Prefect flow `nightly`: each night a new training-analysis run, compared with the night before.

The schedule's night (its scheduled date) gets its own run directory `OUTPUT_ROOT/<date>` and MLflow
run; it is refused in one line while the previous night is still running or when its dry run finds a
problem (the disk short). Once trained, the night is compared with the previous one: heads gained
and lost, pass@1 and reward deltas (`night.json`, `night/*` metrics in the night's MLflow run), and a
`sparks compare` report of the two nights (`OUTPUT_ROOT/<date>/compare/report`). See sparks/run/nights.py.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from prefect import flow

from sparks.config import CompareConfig, load_config
from sparks.files import atomic_write_text
from sparks.flows.train import post_train
from sparks.log.console import say
from sparks.run.nights import change_line, night_metrics, night_over_night, plan_night


def _scheduled_night() -> str:
    """The date the schedule meant (a late start is still that night), or today's."""
    from prefect.runtime import flow_run

    when = flow_run.scheduled_start_time
    return str(when.date()) if when is not None else str(date.today())


@flow(
    name="nightly",
    description="Each night a new post-train run from a YAML config, compared with the night before.",
)
def nightly(
    config_path: str = "configs/demo.yaml",
    output_root: str = "runs/nightly",
    night: str | None = None,
) -> dict:
    """Train `config_path` into OUTPUT_ROOT/<night> (default: the scheduled date) and compare it
    with the previous night."""
    n = plan_night(load_config(config_path), output_root, night or _scheduled_night())
    summary = post_train(n.config)
    out = Path(n.config.output_dir)
    change = night_over_night(out, n.previous)
    atomic_write_text(out / "night.json", json.dumps(change, indent=2))
    say(f"[sparks] {change_line(change)}")
    report = None
    if n.previous is not None:
        from sparks.analysis.compare import run_compare

        report = run_compare(
            CompareConfig(
                name=f"night-{n.name}",
                runs=[str(n.previous), str(out)],
                output_dir=str(out / "compare"),
                tracking=n.config.tracking,
            ),
            progress=say,
        )["report"]
    _log_night(n.config, change, report)
    return summary | {"night": change, "night_report": report}


def _log_night(cfg, change: dict, report: str | None) -> None:
    """The change into the night's own MLflow run (reopened: it ended with its summary)."""
    from sparks.log.tracking import Tracker

    out = Path(cfg.output_dir)
    tracker = Tracker(cfg.tracking.mlflow_uri, cfg.tracking.experiment, cfg.name, out)
    tracker.start(
        {}, {"sparks.night": change["night"], "sparks.previous_night": str(change["previous"])}
    )
    tracker.log_metrics(night_metrics(change), change["step"])
    tracker.log_artifact(out / "night.json")
    if report:
        tracker.set_tags({"sparks.night_report": report})
    tracker.end()
