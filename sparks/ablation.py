"""Ablation studies: a model evaluated as it is and with a head set scaled, side by side.

1. heads: given, or a snapshot's circuit heads, a training run's emergent heads at its last save, or
   a head set of a compare report by name (`heads_from` the report, `head_set` its name);
2. one edited checkpoint per scale (o_proj columns scaled; `scale-{s}/model`), skipped if present;
3. every variant evaluated on the same problems and sampling (`{variant}/eval/`), skipped if present;
4. one MLflow run: eval/{bench}/{metric}/{variant} for every variant, a comparison table and figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sparks.config import AblationConfig
from sparks.evaluate.evaluate import benchmarks_for, evaluate_model, sampling_for
from sparks.evaluate.interventions import write_scaled_checkpoint
from sparks.files import atomic_dir
from sparks.log.tracking import Tracker

BASELINE = "baseline"


def resolve_heads(cfg: AblationConfig) -> list[str]:
    """The head set to intervene on."""
    if cfg.heads:
        return list(cfg.heads)
    src = Path(cfg.heads_from)
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
        ledger = pd.read_parquet(src / "ledger.parquet")
        last = ledger[ledger.step == ledger.step.max()]
        heads = last.loc[last.emergent, "head"].tolist()
        if not heads:
            raise ValueError(
                f"{src}: no emergent heads at its last save (step {int(last.step.max())}): give heads explicitly"
            )
        return heads
    if (src / "snapshot.json").is_file():
        return json.loads((src / "snapshot.json").read_text())["heads"]
    raise FileNotFoundError(
        f"heads_from {src} is neither a training run (ledger.parquet) nor a snapshot (snapshot.json)"
    )


def variant_name(scale: float) -> str:
    return f"scale_{scale:g}"


def run_ablation(cfg: AblationConfig) -> dict:
    """Run the study; returns {variant: {benchmark: metrics}} and the heads used."""
    heads = resolve_heads(cfg)
    out = Path(cfg.output_dir)
    problems = benchmarks_for(cfg.evaluation)
    spec = sampling_for(cfg.evaluation)
    variants = {BASELINE: Path(cfg.model)}
    for s in cfg.scales:
        d = out / variant_name(s) / "model"
        if not d.exists():
            write_scaled_checkpoint(cfg.model, heads, s, d)
        variants[variant_name(s)] = d
    results = {}
    for name, model_dir in variants.items():
        ev_dir = out / name / "eval"
        if not (ev_dir / "metrics.json").is_file():
            res = evaluate_model(
                model_dir,
                problems,
                spec,
                backend=cfg.evaluation.backend,
                overlong=cfg.evaluation.overlong,
            )
            with atomic_dir(ev_dir) as tmp:
                for b, r in res.items():
                    r.table.to_parquet(tmp / f"{b}.parquet", index=False)
                (tmp / "metrics.json").write_text(
                    json.dumps({b: r.metrics for b, r in res.items()}, indent=2)
                )
        results[name] = json.loads((ev_dir / "metrics.json").read_text())
    _log(cfg, heads, results, out)
    return {"heads": heads, "results": results, "output_dir": str(out)}


def _log(cfg: AblationConfig, heads: list[str], results: dict, out: Path) -> None:
    tracker = Tracker(cfg.tracking.mlflow_uri, cfg.tracking.experiment, cfg.name, out)
    tracker.start(
        {
            "model": cfg.model,
            "heads": ",".join(heads),
            "scales": ",".join(map(str, cfg.scales)),
            "benchmarks": ",".join(cfg.evaluation.benchmarks),
            "n": cfg.evaluation.n,
        },
        {"sparks.kind": "ablation-study", "heads": ",".join(heads)},
    )
    rows = []
    for variant, per_bench in results.items():
        for b, m in per_bench.items():
            tracker.log_metrics({f"eval/{b}/{k}/{variant}": v for k, v in m.items()}, 0)
            rows.append({"variant": variant, "benchmark": b, **m})
    table = pd.DataFrame(rows)
    tracker.log_table(table.to_dict(orient="records"), "comparison.json")
    tracker.log_artifact(_figure(table, heads, out / "comparison.png"))
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
