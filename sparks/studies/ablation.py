"""Ablation studies: a model evaluated as it is and with a head set scaled, side by side.

1. heads: given, or a snapshot's circuit heads, a training run's emergent heads at its last save
   (all, or the `max_heads` with the largest |score|), or
   a head set of a compare report by name (`heads_from` the report, `head_set` its name);
2. one edited checkpoint per scale (o_proj columns scaled; `scale-{s}/model`), skipped if present;
   with `control: random`, also one per random-head draw and control scale
   (`control{i}_scale_{s}/model`; `sparks.studies.control`);
3. every variant evaluated on the same problems and sampling (`{variant}/eval/`), skipped if present;
4. the study, problem by problem (`sparks.studies.study`), into `study/`: pass@1 per difficulty
   bucket with intervals, flips against the baseline with the paired test, failure modes, the
   studied heads against the random draws (`control`), as tables (CSV and parquet), figures
   (`tradeoff.png`, `failure_modes.png`) and the sample viewer
   (`viewer.html`); rebuilt from the evaluations each time, swapped in whole;
5. one MLflow run: eval/{bench}/{metric}/{variant} for every variant, the study's per-bucket
   pass@1 and flips, a comparison table and figure, and the study's files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from sparks.config import AblationConfig
from sparks.evaluate.runner import (
    benchmarks_for,
    evaluate_model,
    evaluated,
    read_eval_metrics,
    write_eval_dir,
)
from sparks.files import replacing_dir
from sparks.log.tracking import Tracker
from sparks.studies.interventions import write_scaled_checkpoint
from sparks.track.ledger import primary

BASELINE = "baseline"


def resolve_heads(cfg: AblationConfig) -> list[str]:
    """The head set to intervene on."""
    if cfg.heads or not cfg.heads_from:  # AblationConfig requires one of the two
        return list(cfg.heads)
    src = Path(cfg.heads_from)
    if not src.exists():
        raise FileNotFoundError(
            f"heads_from {src} does not exist: give a training run's directory, a snapshot "
            "directory or a compare report (or list the heads: heads / --heads)"
        )
    sets_file = next(
        (f for f in (src / "head_sets.json", src / "report" / "head_sets.json") if f.is_file()),
        None,
    )
    if sets_file is not None:  # a compare report: one of its head sets, by name
        sets = json.loads(sets_file.read_text())
        if cfg.head_set not in sets:
            raise ValueError(
                f"{sets_file}: no head set {cfg.head_set!r}; set head_set to one of "
                f"{', '.join(sets) or '(none: the report found no emergent or compensatory heads)'}"
            )
        return list(sets[cfg.head_set]["heads"])
    if cfg.head_set:
        raise ValueError(
            f"head_set {cfg.head_set!r} needs heads_from to be a compare report directory "
            f"(with head_sets.json); {src} is not one"
        )
    if (src / "ledger.parquet").is_file():
        last = _last_save(src)
        emergent = last[last.emergent]
        if emergent.empty:
            raise ValueError(
                f"{src}: no emergent heads at its last save (step {int(last.step.max())}): give heads explicitly"
            )
        if cfg.max_heads is not None:  # the strongest, in layer order
            strongest = emergent.score.abs().nlargest(cfg.max_heads).index
            emergent = emergent.loc[sorted(strongest)]
        return emergent["head"].tolist()
    if cfg.max_heads is not None:
        raise ValueError(
            f"max_heads picks among a training run's emergent heads; {src} is not a run "
            "(no ledger.parquet): leave max_heads out"
        )
    if (src / "snapshot.json").is_file():
        return json.loads((src / "snapshot.json").read_text())["heads"]
    raise FileNotFoundError(
        f"heads_from {src} is neither a training run (ledger.parquet) nor a snapshot (snapshot.json)"
    )


def _last_save(run_dir: Path) -> pd.DataFrame:
    """The ledger rows of a training run's primary circuit at its last save."""
    ledger = primary(pd.read_parquet(run_dir / "ledger.parquet"))
    return ledger[ledger.step == ledger.step.max()]


def circuit_heads(cfg: AblationConfig) -> set[str] | None:
    """The heads of the circuit the studied heads come from (a run's last save, or a snapshot);
    None where the study names no circuit (explicit heads, a compare report's set)."""
    if not cfg.heads_from:
        return None
    src = Path(cfg.heads_from)
    if (src / "ledger.parquet").is_file():
        last = _last_save(src)
        return set(last.loc[last.in_circuit, "head"])
    if (src / "snapshot.json").is_file():
        return set(json.loads((src / "snapshot.json").read_text())["heads"])
    return None


def variant_name(scale: float) -> str:
    return f"scale_{scale:g}"


def control_variants(cfg: AblationConfig, heads: list[str]) -> tuple[dict, str]:
    """{variant: (scale, heads)} of the random-head control (empty without one), and its pool."""
    if cfg.control != "random":
        return {}, ""
    from transformers import AutoConfig

    from sparks.models.loading import check_checkpoint
    from sparks.studies.control import draw_sets, head_names

    mc = AutoConfig.from_pretrained(str(check_checkpoint(cfg.model)))
    sets, pool = draw_sets(
        head_names(mc.num_hidden_layers, mc.num_attention_heads), heads, circuit_heads(cfg),
        draws=cfg.draws, seed=cfg.control_seed,
    )  # fmt: skip
    return {
        f"control{i + 1}_{variant_name(s)}": (s, hs)
        for s in cfg.control_scales or cfg.scales
        for i, hs in enumerate(sets)
    }, pool


def _edited(model: str, heads: list[str], scale: float, variant_dir: Path) -> Path:
    """`variant_dir/model`, written unless it holds exactly this edit (a stale one, e.g. other
    control draws, is removed with its evaluation)."""
    d = variant_dir / "model"
    marker = d / "sparks_intervention.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done["heads"] == heads and done["scale"] == scale:
            return d
        shutil.rmtree(variant_dir)
    return write_scaled_checkpoint(model, heads, scale, d)


def plan_ablation(cfg: AblationConfig) -> dict:
    """What `run_ablation(cfg)` would do, checked and counted, with nothing written: the heads,
    every variant, the problems per benchmark and the samples to generate."""
    heads = resolve_heads(cfg)
    controls, pool = control_variants(cfg, heads)
    problems = benchmarks_for(cfg.evaluation)
    variants = [BASELINE, *(variant_name(s) for s in cfg.scales), *controls]
    out = Path(cfg.output_dir)
    done = [v for v in variants if evaluated(out / v / "eval")]
    per_variant = sum(len(ps) for ps in problems.values()) * cfg.evaluation.n
    return {
        "heads": heads, "variants": variants, "controls": {v: hs for v, (_, hs) in controls.items()},
        "pool": pool, "problems": {b: len(ps) for b, ps in problems.items()},
        "samples": per_variant * (len(variants) - len(done)), "already_evaluated": done,
        "output_dir": str(out),
    }  # fmt: skip


def plan_lines(plan: dict, cfg: AblationConfig) -> list[str]:
    """The plan as a person reads it before starting."""
    ev = cfg.evaluation
    lines = [
        f"heads ({len(plan['heads'])}): {', '.join(plan['heads'])}",
        f"variants ({len(plan['variants'])}): {', '.join(plan['variants'])}",
        "problems: " + ", ".join(f"{b} {n}" for b, n in plan["problems"].items())
        + f"; {ev.n} samples each, max_tokens {ev.max_tokens}, temperature {ev.temperature:g}, "
        f"backend {ev.backend}",
        f"samples to generate: {plan['samples']}"
        + (f" ({', '.join(plan['already_evaluated'])} already evaluated)"
           if plan["already_evaluated"] else ""),
        f"output: {plan['output_dir']}",
    ]  # fmt: skip
    if plan["controls"]:
        lines.insert(2, f"random-head control: {len(plan['controls'])} variants, {plan['pool']}")
    return lines


def run_ablation(cfg: AblationConfig) -> dict:
    """Run the study; returns {variant: {benchmark: metrics}} and the heads used."""
    heads = resolve_heads(cfg)
    controls, pool = control_variants(cfg, heads)
    out = Path(cfg.output_dir)
    problems = benchmarks_for(cfg.evaluation)
    spec = cfg.evaluation.sampling()
    variants = {BASELINE: Path(cfg.model)}
    for s in cfg.scales:
        variants[variant_name(s)] = _edited(cfg.model, heads, s, out / variant_name(s))
    for name, (s, hs) in controls.items():
        variants[name] = _edited(cfg.model, hs, s, out / name)
    results, samples, skipped = {}, {}, {}
    for name, model_dir in variants.items():
        ev_dir = out / name / "eval"
        if evaluated(ev_dir) and not _has_responses(ev_dir):
            shutil.rmtree(ev_dir)  # an older sparks' tables, without responses: evaluate again
        if not evaluated(ev_dir):
            res = evaluate_model(
                model_dir,
                problems,
                spec,
                backend=cfg.evaluation.backend,
                overlong=cfg.evaluation.overlong,
                enable_thinking=cfg.enable_thinking,
            )
            write_eval_dir(ev_dir, res)
        results[name] = read_eval_metrics(ev_dir)
        samples[name] = {b: pd.read_parquet(ev_dir / f"{b}.parquet") for b in problems}
        if (ev_dir / "skipped.json").is_file():
            skipped[name] = json.loads((ev_dir / "skipped.json").read_text())
    scales = {BASELINE: 1.0} | {variant_name(s): s for s in cfg.scales}
    study = write_study(
        out / "study", problems, samples, scales, title=_title(cfg, heads),
        controls={v: s for v, (s, _) in controls.items()}, pool=pool, skipped=skipped,
    )  # fmt: skip
    _log(cfg, heads, results, out, study)
    return {
        "heads": heads, "results": results, "output_dir": str(out), "study": study,
        "controls": {v: hs for v, (_, hs) in controls.items()},
    }  # fmt: skip


def _has_responses(ev_dir: Path) -> bool:
    import pyarrow.parquet as pq

    return all("response" in pq.read_schema(t).names for t in ev_dir.glob("*.parquet"))


def _title(cfg: AblationConfig, heads: list[str]) -> str:
    shown = ", ".join(heads[:8]) + (f" (+{len(heads) - 8})" if len(heads) > 8 else "")
    return f"{cfg.name}: {Path(cfg.model).name}, heads {shown}"


def write_study(
    target: Path,
    problems: dict[str, list[dict]],
    samples: dict[str, dict[str, pd.DataFrame]],
    scales: dict[str, float],
    *,
    title: str,
    seed: int = 0,
    controls: dict[str, float] | None = None,
    pool: str = "",
    skipped: dict[str, dict[str, dict[str, list[str]]]] | None = None,
) -> dict:
    """The study's tables, figures and viewer, built beside `target` and swapped in whole.
    Returns the summary: per-bucket pass@1, flips with their test, mode counts, the random-head
    control (`controls`: {control variant: scale}; `pool`: where its heads were drawn), what was
    not measured (`skipped`: {variant: {benchmark: {reason: ids}}}, the known reasons), the paths."""
    from sparks.log import run_figures as figures
    from sparks.studies import control, study
    from sparks.studies.viewer import write_viewer

    controls = controls or {}
    samples = {v: {b: study.with_modes(t) for b, t in ts.items()} for v, ts in samples.items()}
    buckets = study.difficulty(problems, samples[BASELINE])
    unmeasured = study.skipped_problems(problems, samples, skipped or {})
    by_bucket = study.pass_by_bucket(samples, buckets, seed=seed)
    flipped, tests = study.flips(samples, buckets)
    modes = study.mode_counts(samples, buckets)
    studied = {s: v for v, s in scales.items() if v != BASELINE}
    versus = (
        control.control_table(samples, studied, controls, pool=pool, seed=seed)
        if controls
        else pd.DataFrame()
    )
    # the viewer and the failure-mode figure read the studied heads; the draws are in the tables
    shown = {v: t for v, t in samples.items() if v not in controls}
    every = pd.concat(
        [t.assign(variant=v, benchmark=b) for v, ts in samples.items() for b, t in ts.items()],
        ignore_index=True,
    ).merge(buckets, on=["benchmark", "problem_id"])
    with replacing_dir(target) as tmp:
        tables = {"pass_by_bucket": by_bucket, "flips": flipped, "flip_tests": tests,
                  "failure_modes": modes, "difficulty": buckets, "samples": every,
                  "skipped": unmeasured}  # fmt: skip
        if controls:
            tables["control"] = versus
        for name, t in tables.items():
            t.to_parquet(tmp / f"{name}.parquet", index=False)
            if name != "samples":  # responses belong in parquet and the viewer, not a CSV
                t.to_csv(tmp / f"{name}.csv", index=False)
        figures.tradeoff(
            by_bucket, scales, tmp / "tradeoff.png", title=title,
            controls=control.mean_by_bucket(by_bucket, controls) if controls else None,
        )  # fmt: skip
        figures.failure_modes(
            modes[~modes.variant.isin(controls)], tmp / "failure_modes.png", title=title
        )
        write_viewer(
            tmp / "viewer.html", title=title, flipped=flipped[~flipped.variant.isin(controls)],
            tests=tests[~tests.variant.isin(controls)], samples=shown, problems=problems,
            skipped=study.skipped_counts(unmeasured), figures=["tradeoff.png", "failure_modes.png"],
        )  # fmt: skip
    return {
        "dir": str(target),
        "viewer": str(target / "viewer.html"),
        "pass_by_bucket": by_bucket.to_dict(orient="records"),
        "flips": tests.to_dict(orient="records"),
        "failure_modes": modes[modes.samples > 0].to_dict(orient="records"),
        "control": versus.to_dict(orient="records"),
        "skipped": study.skipped_counts(unmeasured).to_dict(orient="records"),
    }


def _log(cfg: AblationConfig, heads: list[str], results: dict, out: Path, study: dict) -> None:
    tracker = Tracker(cfg.tracking.mlflow_uri, cfg.tracking.experiment, cfg.name, out)
    tracker.start(
        {
            "model": cfg.model,
            "heads": ",".join(heads),
            "scales": ",".join(map(str, cfg.scales)),
            "benchmarks": ",".join(cfg.evaluation.benchmarks),
            "n": cfg.evaluation.n,
            "control": cfg.control,
            "control_draws": cfg.draws if cfg.control != "none" else 0,
        },
        {"sparks.kind": "ablation-study", "heads": ",".join(heads)},
    )
    rows = []
    for variant, per_bench in results.items():
        for b, m in per_bench.items():
            tracker.log_metrics({f"eval/{b}/{k}/{variant}": v for k, v in m.items()}, 0)
            rows.append({"variant": variant, "benchmark": b, **m})
    for r in study["pass_by_bucket"]:
        bucket = r["bucket"].replace(" ", "_")
        tracker.log_metrics(
            {f"study/{r['benchmark']}/{bucket}/pass_at_1/{r['variant']}": r["pass@1"]}, 0
        )
    for r in study["flips"]:
        key = f"study/{r['benchmark']}/{{}}/{r['variant']}"
        tracker.log_metrics(
            {key.format("solved_to_failed"): r["solved->failed"],
             key.format("failed_to_solved"): r["failed->solved"],
             key.format("flip_p_value"): r["p_value"]}, 0,
        )  # fmt: skip
    for r in study["skipped"]:
        reason = r["reason"].replace(" ", "_").replace("-", "_")
        tracker.log_metrics(
            {f"study/{r['benchmark']}/skipped/{reason}/{r['variant']}": r["problems"]}, 0
        )
    for r in study["control"]:
        key = f"study/{r['benchmark']}/control/scale_{r['scale']:g}/{{}}"
        tracker.log_metrics(
            {key.format("pass_at_1_studied"): r["studied"],
             key.format("pass_at_1_random_heads"): r["control"],
             key.format("p_value"): r["p_value"]}, 0,
        )  # fmt: skip
    table = pd.DataFrame(rows)
    tracker.log_table(table.to_dict(orient="records"), "comparison.json")
    tracker.log_artifact(_figure(table, heads, out / "comparison.png"))
    for f in sorted(Path(study["dir"]).iterdir()):
        if f.suffix in (".png", ".html", ".csv"):
            tracker.log_artifact(f, "study")
    tracker.end()


def _figure(table: pd.DataFrame, heads: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    piv = table.pivot(index="variant", columns="benchmark", values="pass@1")
    lo = table.pivot(index="variant", columns="benchmark", values="pass@1_ci_low")
    hi = table.pivot(index="variant", columns="benchmark", values="pass@1_ci_high")
    import numpy as np

    err = np.stack(
        [(piv - lo).T.to_numpy(), (hi - piv).T.to_numpy()], axis=1
    )  # [benchmarks, 2, variants]
    ax = piv.plot.bar(yerr=err, capsize=3, figsize=(6, 3.5), rot=0)
    ax.set_ylabel("pass@1 (95% CI)")
    ax.set_title(f"heads {', '.join(heads)}", fontsize=9)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)
    plt.close(ax.figure)
    return path
