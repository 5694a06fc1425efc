"""`sparks compare`: runs and checkpoints with a common base, as one report logged to MLflow.

1. load: every source's saves, rewards and evaluations (`series.load_sources`);
2. think (optional): one model's snapshots and evaluation with thinking on and off (`think`);
3. analyse: every table of the report (`report.analyse`);
4. log and write: the report's own MLflow run (tagged with the runs it compares, which are tagged
   back), then the report directory `OUTPUT_DIR/report/` with direct links, logged as artifacts.

Layout of `output_dir`: report/ (report.html, figures/, tables/, head_sets.json, summary.json),
think/{on,off}/ (pairs, circuit, eval: kept, so a rerun only redoes the report), mlflow_run.json.
"""

from __future__ import annotations

from pathlib import Path

from sparks.analysis.report import Report, analyse, write_report
from sparks.analysis.series import Sources, load_sources
from sparks.analysis.think import run_think
from sparks.config import CompareConfig
from sparks.log.tracking import Tracker, run_links


def load(cfg: CompareConfig) -> Sources | None:
    """The runs and checkpoints to compare (None for a think-only comparison)."""
    return load_sources(list(cfg.runs), base=cfg.base) if cfg.runs else None


def think(cfg: CompareConfig, *, progress=print):
    return (
        run_think(cfg.think, Path(cfg.output_dir) / "think", progress=progress)
        if cfg.think
        else None
    )


def build(cfg: CompareConfig, sources: Sources | None, think_result) -> Report:
    if sources is None:  # think only: thinking on is the reference the off circuit is read against
        sources = Sources(think_result.tables["on"].assign(step=0), "thinking on", [])
    return analyse(sources, threshold=cfg.stability, name=cfg.name, think=think_result)


def publish(cfg: CompareConfig, report: Report) -> dict:
    """Log the report as its own MLflow run, linked both ways to the runs it compares, and write
    it (with the links) into output_dir/report."""
    out = Path(cfg.output_dir)
    compared = sorted({s.mlflow_run for s in report.sources.series if s.mlflow_run})
    tracker = Tracker(cfg.tracking.mlflow_uri, cfg.tracking.experiment, cfg.name, out)
    tracker.start(
        {
            "runs": ",".join(cfg.runs),
            "base": cfg.base or "",
            "stability": cfg.stability,
            "think.model": cfg.think.model if cfg.think else "",
        },
        {"sparks.kind": "compare", "sparks.compares": ",".join(compared)},
    )
    links = tracker.links()
    run_links_of = _link_back(tracker, report)
    links |= {f"{name} in MLflow": url for name, url in run_links_of.items()}
    path = write_report(report, out / "report", links=links)
    summary = report.summary()
    metrics = {}
    for name in summary["series"]:
        for k in ("retention", "churn_per_save"):
            v = summary[k].get(name)
            if v is not None:
                metrics[f"compare/{name}/{k}"] = v
    for row in report.tables["emergent"].itertuples():
        metrics[f"compare/{row.model}/gained"] = row.gained
        metrics[f"compare/{row.model}/gained_stable"] = row.gained_stable
    if 0 not in tracker.metric_steps(next(iter(metrics), "none")):  # a rerun logs nothing twice
        tracker.log_metrics(metrics, 0)
    tracker.log_artifact(out / "report")
    if links:
        note = "sparks comparison report: artifacts/report/report.html\n\n" + "\n".join(
            f"- [{k}]({v})" for k, v in links.items()
        )
        tracker.set_tags({"mlflow.note.content": note})
    tracker.end()
    report_link = (
        links["artifacts"].replace("/artifacts?", "/artifacts/report/report.html?")
        if links
        else None
    )
    return {
        "report": str(path),
        "run_id": tracker.run_id,
        "offline": tracker.offline,
        "links": links | ({"report": report_link} if report_link else {}),
        **summary,
    }


def _link_back(tracker: Tracker, report: Report) -> dict[str, str]:
    """Tag each compared run (on the same server) with this report's run; their links."""
    out: dict[str, str] = {}
    if tracker.offline or tracker.client is None:
        return out
    for s in report.sources.series:
        if not s.mlflow_run or s.mlflow_uri != tracker.uri:
            continue
        try:
            run = tracker.client.get_run(s.mlflow_run)
            tracker.client.set_tag(s.mlflow_run, "sparks.compared_in", tracker.run_id)
            out[s.name] = run_links(tracker.uri, run.info.experiment_id, s.mlflow_run)[
                "head trajectories"
            ]
        except Exception:  # a run deleted since: the report still stands
            continue
    return out


def run_compare(cfg: CompareConfig, *, progress=print) -> dict:
    """The whole comparison without Prefect (the flow calls the same steps as tasks)."""
    sources = load(cfg)
    return publish(cfg, build(cfg, sources, think(cfg, progress=progress)))
