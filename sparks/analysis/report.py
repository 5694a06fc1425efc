"""The comparison report: every analysis computed once (`analyse`), then written (`write_report`)
as tables (CSV and parquet), figures (PNG), head sets ready for the ablation study, a summary and
one self-contained HTML page (figures inlined), atomically: a report directory is never half-written.

Sections: 1 emergent heads against the base; 2 activation frequency; 3 cohorts; 4 E scores;
5 GRPO dynamics; 6 retention and churn, SFT/distillation vs GRPO; 7 think on/off; task-specific
circuits (runs with several pair sets); 8 head sets.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from sparks.analysis import heads
from sparks.analysis import report_figures as figures
from sparks.analysis.series import Sources
from sparks.analysis.task_circuits import set_circuits
from sparks.analysis.think import ThinkResult
from sparks.files import render_template, replacing_dir

TOP_E = 8  # heads listed in each direction of an E-score comparison


@dataclass
class Report:
    name: str
    threshold: float
    sources: Sources
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    correlations: list[dict] = field(default_factory=list)
    head_sets: dict[str, dict] = field(default_factory=dict)
    think: ThinkResult | None = None

    def summary(self) -> dict:
        ret = self.tables["retention"].set_index("series")
        return {
            "name": self.name,
            "stability_threshold": self.threshold,
            "base": self.sources.base_name,
            "series": [s.name for s in self.sources.series],
            "retention": {k: _num(v) for k, v in ret["retention"].items()},
            "churn_per_save": {k: _num(v) for k, v in ret["churn_per_save"].items()},
            "correlations": [  # undefined correlations as null: summary.json stays valid JSON
                {k: _num(v) if k in ("r", "ci_low", "ci_high") else v for k, v in c.items()}
                for c in self.correlations
            ],
            "head_sets": {k: v["heads"] for k, v in self.head_sets.items()},
            "pair_sets": {  # series -> status (shared, only NAME, several) -> heads
                series: {st: sorted(g["head"]) for st, g in rows.groupby("status")}
                for series, rows in self.tables.get(
                    "pair_sets", pd.DataFrame(columns=["series"])
                ).groupby("series", sort=False)
            },
        }


def _num(v) -> float | None:
    return None if pd.isna(v) else round(float(v), 4)


def analyse(
    sources: Sources, *, threshold: float, name: str, think: ThinkResult | None = None
) -> Report:
    """Every table of the report from the sources (and the think on/off result, if any)."""
    r = Report(name, threshold, sources, think=think)
    finals = {s.name: s.at(s.saves[-1]) for s in sources.series if s.saves}
    if think is not None:
        finals |= {f"think {m}": t for m, t in think.tables.items()}
    r.tables["emergent"] = heads.emergent_table(sources.base, finals, threshold)
    runs = [s for s in sources.series if s.saves]
    r.tables["frequency"] = pd.concat(
        [heads.activation_frequency(s) for s in runs] or [pd.DataFrame()], ignore_index=True
    )
    r.tables["cohorts"] = pd.concat(
        [heads.cohorts(s) for s in runs] or [pd.DataFrame()], ignore_index=True
    )
    e = []
    for s in runs:
        e.append(heads.e_scores(sources.base, finals[s.name]).assign(between=f"base -> {s.name}"))
    if think is not None:
        e.append(
            heads.e_scores(think.tables["on"], think.tables["off"]).assign(
                between="think on -> off"
            )
        )
    r.tables["e_scores"] = pd.concat(e or [pd.DataFrame()], ignore_index=True)
    r.tables["dynamics"] = pd.concat(
        [heads.dynamics(s) for s in runs] or [pd.DataFrame()], ignore_index=True
    )
    member = []
    for s in runs:
        d = heads.dynamics(s)
        if d.reward.notna().sum() >= 1:
            for what in ("churn", "heads"):
                c = heads.correlation(d[what], d.reward)
                r.correlations.append({"series": s.name, "x": what, "y": "reward", **c})
            member.append(heads.membership_vs_reward(s))
    r.tables["correlations"] = pd.DataFrame(
        r.correlations, columns=["series", "x", "y", "r", "ci_low", "ci_high", "n"]
    )
    r.tables["membership_vs_reward"] = pd.concat(member or [pd.DataFrame()], ignore_index=True)
    r.tables["retention"] = pd.DataFrame(
        [heads.retention(s) for s in runs],
        columns=[
            "series",
            "method",
            "saves",
            "entered",
            "retained",
            "retention",
            "churn_per_save",
            "churn_rate",
            "mean_heads",
        ],
    )
    r.tables["pair_sets"] = pd.concat(
        [set_circuits(s) for s in runs] or [set_circuits(None)], ignore_index=True
    )
    for s in runs:  # each set's own heads, ready for an ablation study
        mine = r.tables["pair_sets"][r.tables["pair_sets"].series == s.name]
        for status, g in mine.groupby("status"):
            if s.model and status.startswith("only "):
                key = f"{s.name}/{status.removeprefix('only ')}-specific"
                r.head_sets[key] = {"heads": g["head"].tolist(), "model": s.model}
    for s in runs:
        for stable, suffix in ((threshold, "emergent"), (None, "emergent-all")):
            hs = heads.emergent_heads(sources.base, finals[s.name], stable)
            if hs and s.model:
                r.head_sets[f"{s.name}/{suffix}"] = {"heads": hs, "model": s.model}
    if think is not None:
        sets = heads.think_sets(think.tables["on"], think.tables["off"], threshold)
        r.tables["think_sets"] = sets
        for row in sets.itertuples():
            kind = {"compensatory (off only)": "compensatory", "on only": "on-only"}.get(
                str(row.set)
            )
            if kind and row.members:
                r.head_sets[f"think/{kind}"] = {
                    "heads": row.members.split(","),
                    "model": think.model,
                }
        r.tables["think_eval"] = pd.DataFrame(
            [
                {"variant": f"thinking {m}", "benchmark": b, **met}
                for m, per in think.evals.items()
                for b, met in per.items()
            ]
        )
    evals = [
        {"series": s.name, "step": step, "benchmark": b, **m}
        for s in sources.series
        for step, per in sorted(s.evals.items())
        for b, m in per.items()
    ]
    r.tables["evaluations"] = pd.DataFrame(evals)
    return r


def ablation_parameters(report_dir: Path, name: str, spec: dict) -> dict:
    """The ablation-study parameters that intervene on head set `name` of a report."""
    return {
        "name": f"ablate-{name.replace('/', '-').replace(' ', '-')}",
        "model": spec["model"],
        "heads_from": str(report_dir),
        "head_set": name,
        "scales": [0.0, 0.5],
        "output_dir": f"runs/ablation-{name.replace('/', '-')}",
    }


def ablate_command(name: str, spec: dict) -> str:
    """The same intervention from the command line (zero ablation, then an evaluation)."""
    out = f"runs/ablation-{name.replace('/', '-')}/scale-0"
    return (
        f"sparks ablate {spec['model']} --heads {','.join(spec['heads'])} --scale 0 --out {out} "
        "--benchmark aime24 --benchmark amc23   # or --benchmark world on the embedded model"
    )


def write_report(r: Report, out: Path, *, links: dict[str, str] | None = None) -> Path:
    """Write the report into `out` (replacing an earlier one only once the new one is complete)."""
    out = Path(out)
    with replacing_dir(out) as tmp:
        _write(r, tmp, final=out.resolve(), links=links or {})
    return out / "report.html"


def _write(r: Report, d: Path, *, final: Path, links: dict[str, str]) -> None:
    (d / "tables").mkdir(parents=True)
    (d / "figures").mkdir()
    for name, t in r.tables.items():
        t.to_csv(d / "tables" / f"{name}.csv", index=False)
        t.to_parquet(d / "tables" / f"{name}.parquet", index=False)
    sets = {
        k: v | {"ablation": ablation_parameters(final, k, v), "command": ablate_command(k, v)}
        for k, v in r.head_sets.items()
    }
    (d / "head_sets.json").write_text(json.dumps(sets, indent=2))
    (d / "summary.json").write_text(json.dumps(r.summary(), indent=2))
    figs = _figures(r, d / "figures")
    (d / "report.html").write_text(_html(r, d, figs, sets, final, links))


def _figures(r: Report, d: Path) -> dict[str, Path]:
    from sparks.log.run_figures import trajectory

    t, figs = r.tables, {}
    runs = [s for s in r.sources.series if s.saves]
    if runs:
        figs["frequency"] = figures.frequency_panels(
            [t["frequency"][t["frequency"].series == s.name] for s in runs], d / "frequency.png"
        )
        figs["cohorts"] = figures.cohort_curves(t["cohorts"], d / "cohorts.png")
        figs["dynamics"] = figures.dynamics_plot(t["dynamics"], d / "dynamics.png")
        figs["retention"] = figures.retention_bars(t["retention"], d / "retention.png")
    e = t["e_scores"]
    if len(e):
        figs["e_scores"] = figures.e_score_panels(
            {c: g for c, g in e.groupby("between", sort=False)}, d / "e_scores.png"
        )
    for s in runs:
        if s.rewards.notna().any():
            figs[f"membership {s.name}"] = trajectory(
                s.ledger,
                {"mean reward": s.rewards},
                d / f"membership-{s.name}.png",
                title=f"{s.name}: heads in the circuit at each save, and the reward",
            )
    sets = t.get("pair_sets", pd.DataFrame())
    set_names = (
        sorted({st.removeprefix("only ") for st in sets.status if st.startswith("only ")})
        if len(sets)
        else []
    )
    for s in runs:
        mine = sets[sets.series == s.name] if len(sets) else sets
        if len(mine):
            figs[f"sets {s.name}"] = figures.set_map(
                s.at(s.saves[-1]),
                mine,
                d / f"sets-{s.name}.png",
                title=f"{s.name}: circuit heads by pair set, last save",
                set_names=set_names,
            )
    if r.think is not None:
        figs["think"] = figures.think_map(
            r.think.tables["on"], r.think.tables["off"], d / "think.png"
        )
        if len(t["think_eval"]):
            figs["think_eval"] = figures.pass_at_1_bars(t["think_eval"], d / "think-eval.png")
    return figs


# HTML --------------------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f2f2f2}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
code,pre{background:#f6f6f6;padding:2px 4px}pre{padding:8px;overflow-x:auto}.note{color:#555;font-size:14px}"""


def _uri(path: Path) -> str:
    """A PNG inlined as a data URI: the report is one file that opens anywhere (MLflow's
    artifact viewer included)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _table(df: pd.DataFrame, **kw) -> Markup:
    """A table as HTML (pandas escapes the cells)."""
    return Markup(
        df.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="–", border=0, **kw)
    )


def _html(r: Report, d: Path, figs: dict, sets: dict, final: Path, links: dict) -> str:
    """The report page: templates/report.html.jinja filled with this report's tables and figures."""
    t = r.tables
    tables = {"emergent": _table(t["emergent"])}
    if "frequency" in figs:
        sizes = t["cohorts"].drop_duplicates(["series", "cohort"])[["series", "cohort", "size"]]
        tables["cohort_sizes"] = _table(sizes)
    e_tops = []
    if "e_scores" in figs:
        for c, g in t["e_scores"].groupby("between", sort=False):
            top = pd.concat([g.nlargest(TOP_E, "E"), g.nsmallest(TOP_E, "E")])
            e_tops.append((c, _table(top[["head", "I_pre", "I_post", "E"]])))
    if "dynamics" in figs:
        if len(t["correlations"]):
            tables["correlations"] = _table(t["correlations"])
        if len(t["membership_vs_reward"]):
            tables["membership_vs_reward"] = _table(t["membership_vs_reward"].head(20))
    if "retention" in figs:
        tables["retention"] = _table(t["retention"])
    if r.think is not None:
        tables["think_sets"] = _table(t["think_sets"])
        if "think_eval" in figs:
            cols = ["variant", "benchmark", "pass@1", "pass@1_ci_low", "pass@1_ci_high",
                    "problems", "samples_per_problem"]  # fmt: skip
            tables["think_eval"] = _table(t["think_eval"][cols])
    if len(t.get("pair_sets", [])):
        tables["pair_sets"] = _table(t["pair_sets"])
    if len(t["evaluations"]):
        cols = [
            c
            for c in ["series", "step", "benchmark", "pass@1", "pass@1_ci_low", "pass@1_ci_high"]
            if c in t["evaluations"]
        ]
        tables["evaluations"] = _table(t["evaluations"][cols])
    return render_template(
        "sparks.analysis",
        "report.html.jinja",
        name=r.name,
        css=Markup(CSS),
        base=r.sources.base_name,
        series=[
            {"name": s.name, "method": s.method, "saves": len(s.saves), "source": s.source}
            for s in r.sources.series
        ],
        threshold=f"{r.threshold:g}",
        links=links,
        tables=tables,
        figs={k: _uri(f) for k, f in figs.items() if " " not in k},
        e_tops=e_tops,
        top_e=TOP_E,
        membership=[
            (k.removeprefix("membership "), _uri(f))
            for k, f in figs.items()
            if k.startswith("membership ")
        ],
        set_figs=[(k, _uri(f)) for k, f in figs.items() if k.startswith("sets ")],
        head_sets=[
            {
                "name": k,
                "heads": v["heads"],
                "config": json.dumps({"config": v["ablation"]}, indent=1),
                "command": v["command"],
            }
            for k, v in sets.items()
        ],
    )
