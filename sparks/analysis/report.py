"""The comparison report: every analysis computed once (`analyse`), then written (`write_report`)
as tables (CSV and parquet), figures (PNG), head sets ready for the ablation study, a summary and
one self-contained HTML page (figures inlined), atomically: a report directory is never half-written.

Sections: 1 emergent heads against the base; 2 activation frequency; 3 cohorts; 4 E scores;
5 GRPO dynamics; 6 retention and churn, SFT/distillation vs GRPO; 7 think on/off; task-specific
circuits (runs with several pair sets); 8 head sets.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sparks.analysis import figures, heads
from sparks.analysis.series import Sources
from sparks.analysis.sets import set_circuits
from sparks.analysis.think import ThinkResult
from sparks.files import replacing_dir

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
            key = {"compensatory (off only)": "compensatory", "on only": "on-only"}.get(row.set)
            if key and row.members:
                r.head_sets[f"think/{key}"] = {
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
    from sparks.log.figures import trajectory

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


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(df: pd.DataFrame, **kw) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="–", border=0, **kw)


def _html(r: Report, d: Path, figs: dict, sets: dict, final: Path, links: dict) -> str:
    t, thr = r.tables, r.threshold
    p = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>sparks compare: {html.escape(r.name)}</title>"
    ]
    p.append(f"<style>{CSS}</style></head><body><h1>sparks compare: {html.escape(r.name)}</h1>")
    p.append(f"<p class='note'>Base: {html.escape(r.sources.base_name)}. Series: ")
    p.append(
        ", ".join(
            f"<b>{html.escape(s.name)}</b> ({s.method}, {len(s.saves)} saves, from {html.escape(s.source)})"
            for s in r.sources.series
        )
    )
    p.append(
        f". A head counts as <i>stable</i> when its bootstrap stability is at least {thr:g}.</p>"
    )
    if links:
        p.append(
            "<p>"
            + " · ".join(
                f"<a href='{html.escape(u)}'>{html.escape(k)}</a>" for k, u in links.items()
            )
            + "</p>"
        )
    p.append(
        "<h2>1. Emergent heads against the base</h2><p class='note'>Circuit sizes; heads gained "
        "(in the model's circuit, not the base's) and lost, raw and stable, with the mean stability "
        "of the heads counted.</p>" + _table(t["emergent"])
    )
    if "frequency" in figs:
        p.append(
            "<h2>2. Activation frequency</h2><p class='note'>Share of each series' saves in which "
            "a head is in the circuit (one colour scale).</p>"
            + _img(figs["frequency"], "activation frequency")
        )
        p.append(
            "<h2>3. Cohorts</h2><p class='note'>Heads grouped by the save at which they first "
            "entered the circuit; how many of each cohort are still in at every later save.</p>"
        )
        p.append(_img(figs["cohorts"], "cohorts"))
        sizes = t["cohorts"].drop_duplicates(["series", "cohort"])[["series", "cohort", "size"]]
        p.append(_table(sizes))
    if "e_scores" in figs:
        p.append(
            "<h2>4. E score</h2><p class='note'>E = (I_post − I_pre) / (I_post + I_pre + ε), I = the "
            "head's share of |edge score| (its outgoing edges).</p>"
            + _img(figs["e_scores"], "E scores")
        )
        for c, g in t["e_scores"].groupby("between", sort=False):
            top = pd.concat([g.nlargest(TOP_E, "E"), g.nsmallest(TOP_E, "E")])
            p.append(
                f"<h4>{html.escape(c)}: top {TOP_E} each way</h4>"
                + _table(top[["head", "I_pre", "I_post", "E"]])
            )
    if "dynamics" in figs:
        p.append(
            "<h2>5. Training dynamics</h2><p class='note'>Per save: heads activated and pruned, circuit "
            "size and the mean reward since the previous save. Correlations are Pearson r over saves with "
            "a 95% bootstrap interval (undefined, –, with fewer than 3 saves or a constant series).</p>"
        )
        p.append(_img(figs["dynamics"], "dynamics"))
        if len(t["correlations"]):
            p.append(_table(t["correlations"]))
        for k, f in figs.items():
            if k.startswith("membership "):
                p.append(
                    f"<h4>{html.escape(k.removeprefix('membership '))}: membership against reward</h4>"
                    + _img(f, k)
                )
        if len(t["membership_vs_reward"]):
            p.append(_table(t["membership_vs_reward"].head(20)))
    if "retention" in figs:
        p.append(
            "<h2>6. SFT/distillation vs GRPO: retention and churn</h2><p class='note'>retention: of "
            "the heads that entered the circuit at one of a series' saves, the share still in at its last "
            "save (cumulative growth keeps them: near 1). churn: heads activated + pruned per save "
            "(a dynamic search: high).</p>"
            + _img(figs["retention"], "retention")
            + _table(t["retention"])
        )
    if r.think is not None:
        p.append(
            "<h2>7. Think on/off</h2><p class='note'>One model, the same problems, pairs built with "
            "each template; compensatory heads are in the thinking-off circuit only.</p>"
        )
        p.append(_img(figs["think"], "think on/off circuits") + _table(t["think_sets"]))
        if "think_eval" in figs:
            cols = [
                "variant",
                "benchmark",
                "pass@1",
                "pass@1_ci_low",
                "pass@1_ci_high",
                "problems",
                "samples_per_problem",
            ]
            p.append(_img(figs["think_eval"], "pass@1 on/off") + _table(t["think_eval"][cols]))
    if len(t.get("pair_sets", [])):
        p.append(
            "<h2 id='pair-sets'>Task-specific circuits (pair sets)</h2><p class='note'>Each save "
            "was measured on several pair sets. At each series' last save: heads in every set's "
            "circuit (shared), in one set's only, or in several; stability is the share of the "
            "series' saves at which the head had the same status.</p>"
        )
        for k, f in figs.items():
            if k.startswith("sets "):
                p.append(_img(f, k))
        p.append(_table(t["pair_sets"]))
    if len(t["evaluations"]):
        cols = [
            c
            for c in ["series", "step", "benchmark", "pass@1", "pass@1_ci_low", "pass@1_ci_high"]
            if c in t["evaluations"]
        ]
        p.append("<h3>Evaluations of the compared saves</h3>" + _table(t["evaluations"][cols]))
    p.append(
        "<h2>8. From finding to intervention</h2><p class='note'>Each head set below feeds the "
        "ablation study as it is: the <code>ablation-study</code> deployment with these parameters, "
        "or the command under it.</p>"
    )
    if not sets:
        p.append("<p>No head set (no emergent or compensatory heads).</p>")
    for k, v in sets.items():
        p.append(
            f"<h4>{html.escape(k)}: {len(v['heads'])} heads</h4><p>{html.escape(', '.join(v['heads']))}</p>"
        )
        p.append(f"<pre>{html.escape(json.dumps({'config': v['ablation']}, indent=1))}</pre>")
        p.append(f"<pre>{html.escape(v['command'])}</pre>")
    p.append(
        "<p class='note'>Tables: tables/*.csv and *.parquet beside this page; head sets: head_sets.json.</p></body></html>"
    )
    return "".join(p)
