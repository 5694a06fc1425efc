"""`make demo`: the main job on the embedded default.

Runs the Prefect flow `post-train` on configs/demo.yaml: the embedded world's tiny Qwen2 model is
post-trained with SFT then GRPO (TRL), with a circuit snapshot at every save, all logged to MLflow
under ./mlflow/data; then compares its two phases (`sparks compare`: retention and churn, the
report), runs a scaling study of the run's own emergent heads (ablated and doubled, on the world's
test problems, beside a random-head control: pass@1 per difficulty level, flips, failure modes,
the sample viewer), and measures the paper's findings on it (`sparks.analysis.findings`: a table
with intervals, paired tests and verdicts, written to OUTPUT_DIR/findings.md).
Prints where everything went and direct links to browse it. The console shows one progress
line per stage and per snapshot; library warnings go to OUTPUT_DIR/sparks.log.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparks.config import load_config
from sparks.train.saves import stage_dir


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
    from sparks.run.plan import dry_run

    # every input that can be checked offline is checked before anything is written
    if problems := dry_run(cfg).problems:
        raise ValueError(f"{problems[0]} (nothing was started or written)")
    prefect_env()
    from sparks.log.console import quiet_console

    log = quiet_console(Path(cfg.output_dir) / "sparks.log")
    from sparks.flows.train import post_train

    print(
        f"[sparks] post-train flow: {' then '.join(s.method for s in cfg.stages)} on {cfg.model.path}, "
        f"outputs in {cfg.output_dir}"
    )
    summary = post_train(cfg)
    store = summary["mlflow_uri"]
    print(f"[sparks] done in {summary['wall_seconds']}s, {summary['saves']} saves snapshotted")
    print(snapshot_overhead_line(summary))
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
    compare = _compare_phases(cfg)
    if compare is not None:
        print_comparison(compare)
        summary["compare"] = compare
    study = _scaling_study(cfg)
    if study is not None:
        print_study(study)
        summary["study"] = study
    summary["findings"] = _findings(cfg, study)
    if not summary["offline"]:
        if not store.startswith(("http://", "https://")):
            print(
                f"[sparks] browse in MLflow:  .venv/bin/mlflow ui --backend-store-uri {store} --port 5000"
            )
        for label, url in summary.get("links", {}).items():
            print(f"[sparks]   {label}: {url}")
    print(f"[sparks] library warnings and logs: {log}")
    return summary


def snapshot_overhead_line(summary: dict) -> str:
    """The share of the flow's wall time spent in circuit snapshots (building them, and recording
    them: ledger, MLflow, figures), in all and per pair set.

    >>> snapshot_overhead_line({"wall_seconds": 200.0, "snapshot_seconds": 15.0,
    ...     "snapshot_seconds_by_set": {"chains": 7.0, "mixed": 5.0, "stories": 3.0},
    ...     "record_seconds": 3.0,
    ...     "record_seconds_by_set": {"chains": 1.0, "mixed": 1.0, "stories": 1.0}})
    '[sparks] circuit snapshots: 18.0s, 9.0% of the wall time (building 15.0s, recording 3.0s; chains 8.0s 4.0%, mixed 6.0s 3.0%, stories 4.0s 2.0%)'
    """
    wall = max(summary["wall_seconds"], 1e-9)
    built, recorded = summary["snapshot_seconds"], summary.get("record_seconds", 0.0)
    sets = summary.get("snapshot_seconds_by_set") or {}
    rec = summary.get("record_seconds_by_set") or {}
    per_set = "; " + ", ".join(
        f"{n} {v + rec.get(n, 0.0):.1f}s {(v + rec.get(n, 0.0)) / wall:.1%}"
        for n, v in sets.items()
    )  # fmt: skip
    return (
        f"[sparks] circuit snapshots: {built + recorded:.1f}s, "
        f"{(built + recorded) / wall:.1%} of the wall time (building {built:.1f}s, "
        f"recording {recorded:.1f}s{per_set if sets else ''})"
    )


def _compare_phases(cfg) -> dict | None:
    """The run's stages side by side (`sparks compare` on its own output), when it has two or more."""
    if len(cfg.stages) < 2:
        return None
    from sparks.analysis.compare import run_compare
    from sparks.config import CompareConfig

    return run_compare(
        CompareConfig(
            name=f"{cfg.name}-phases",
            runs=[cfg.output_dir],
            output_dir=str(Path(cfg.output_dir) / "compare"),
            tracking=cfg.tracking,
        )
    )


STUDY_SCALES = (0.0, 2.0)  # the emergent heads ablated and doubled
STUDY_HEADS = 2  # the strongest emergent heads: a 16-head model breaks when five go at once
CONTROL_DRAWS = 3  # random-head sets ablated beside them


def _world_tests(cfg):
    from sparks.world.build import world_for

    return world_for(cfg.world).tasks("test")


def _findings(cfg, study: dict | None) -> list[dict]:
    """The paper's findings measured on this run, printed and written to findings.md."""
    from sparks.analysis import findings
    from sparks.config import WORLD

    if WORLD not in cfg.evaluation.benchmarks or not cfg.evaluation.enabled:
        return []
    rows = findings.measure(
        Path(cfg.output_dir), _world_tests(cfg), study["study"] | {"heads": study["heads"]}
        if study else None,
    )  # fmt: skip
    path = findings.write(rows, Path(cfg.output_dir))
    print("[sparks] the paper's findings, in miniature (measured on this run):")
    for r in rows:
        print(f"[sparks]   [{r.verdict}] {r.finding}: {r.measured}")
    print(f"[sparks] findings table: {path}")
    return [r.__dict__ | {"verdict": r.verdict} for r in rows]


def _scaling_study(cfg) -> dict | None:
    """The last stage's model with the run's emergent heads (at its last save) scaled by each of
    STUDY_SCALES, against itself, on the run's evaluation settings; None without emergent heads."""
    from sparks.config import WORLD, AblationConfig
    from sparks.studies.ablation import resolve_heads, run_ablation
    from sparks.world.build import world_for

    out, last = Path(cfg.output_dir), len(cfg.stages) - 1
    ev = cfg.evaluation
    if not ev.enabled:
        return None
    if WORLD in ev.benchmarks and WORLD not in ev.sources:
        ev = ev.model_copy(
            update={"sources": {WORLD: str(world_for(cfg.world).tasks_path("test"))}}
        )
    study = AblationConfig(
        name=f"{cfg.name}-study",
        model=str(stage_dir(out, last, cfg.stages[last].method) / "final"),
        heads_from=str(out),
        max_heads=STUDY_HEADS,
        scales=list(STUDY_SCALES),
        control="random",
        draws=CONTROL_DRAWS,
        control_scales=[0.0],
        output_dir=str(out / "scaling"),
        evaluation=ev,
        tracking=cfg.tracking,
    )
    try:
        resolve_heads(study)
    except ValueError as e:  # no emergent heads at the last save: nothing to scale
        print(f"[sparks] scaling study skipped: {e}")
        return None
    print(f"[sparks] scaling study: emergent heads x {', '.join(map(str, STUDY_SCALES))}")
    return run_ablation(study)


def print_study(result: dict) -> None:
    """Per-bucket pass@1, flips and failure-mode counts of the demo's scaling study."""
    study = result["study"]
    print(f"[sparks] scaling study of the emergent heads {', '.join(result['heads'])}:")
    for r in study["pass_by_bucket"]:
        print(
            f"[sparks]   {r['variant']:9} {r['bucket']:8} pass@1 {r['pass@1']:.3f} "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] ({r['problems']} problems)"
        )
    for r in study["flips"]:
        print(
            f"[sparks]   {r['variant']:9} flips against the baseline: solved->failed "
            f"{r['solved->failed']}, failed->solved {r['failed->solved']} (exact McNemar p "
            f"{r['p_value']:.3g})"
        )
    modes: dict[str, dict[str, int]] = {}
    for r in study["failure_modes"]:
        modes.setdefault(r["variant"], {}).setdefault(r["mode"], 0)
        modes[r["variant"]][r["mode"]] += r["samples"]
    for variant, counts in modes.items():
        text = ", ".join(f"{m} {n}" for m, n in counts.items())
        print(f"[sparks]   {variant:9} failure modes: {text}")
    from sparks.studies.control import control_lines

    for line in control_lines(study.get("control", [])):
        print(f"[sparks]   {line.strip()}")
    print(f"[sparks] study tables and figures: {study['dir']}; sample viewer: {study['viewer']}")


def print_comparison(c: dict) -> None:
    """Retention and churn per series, the report's path and its link."""
    print(f"[sparks] comparison of {', '.join(c['series']) or 'think on/off'}:")
    for name in c["series"]:
        ret, churn = c["retention"].get(name), c["churn_per_save"].get(name)
        r = "n/a (no head entered)" if ret is None else f"{ret:.2f}"
        ch = "n/a" if churn is None else f"{churn:.2f}"
        print(f"[sparks]   {name}: retention {r}, churn {ch} heads per save")
    for name, by_status in c.get("pair_sets", {}).items():  # runs with several pair sets
        text = "; ".join(f"{st}: {', '.join(h)}" for st, h in by_status.items())
        print(f"[sparks]   {name} circuit heads by pair set at its last save: {text}")
    print(f"[sparks] report: {c['report']}")
    if c.get("links", {}).get("report"):
        print(f"[sparks]   in MLflow: {c['links']['report']}")
