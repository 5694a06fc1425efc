"""The paper's findings, measured on one post-training run: what `make demo` prints and the README's
table "the paper's findings, in miniature" shows.

Inputs are a finished run's own files (the base's and every stage's last evaluation, the GRPO
trainer's log, the ledger, the snapshots) and its scaling study. Every finding is a row: the
paper's claim, what the run measured (with 95 % bootstrap intervals over problems and paired
tests over the same problems), the targets it is held to, and whether it is reproduced. The
verdicts are computed here from the numbers, never written by hand.

1. post-training unlocks the base: base pass@1 (chat prompt) -> after SFT, paired Wilcoxon;
2. levels are difficulty: pass@1 per level after SFT; the hardest family after the last stage;
3. GRPO improves on SFT as the correctness reward rises: pass@1 change with its paired test,
   the reward's first and last quarter;
4. SFT adds stable heads: emergent heads at SFT's last save and how long they stayed;
5. GRPO activates and prunes heads: entries and exits of the circuit during GRPO;
6. ablating the emergent heads hurts: flips (exact McNemar) and the random-head control;
7. scaling them up trades easy for hard: per-level change at the largest scale;
8. task-specific circuits: heads of one pair set only, at the last save;
9. the circuits are faithful: top-k faithfulness at every trained save.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sparks.evaluate.metrics import bootstrap_ci, paired_p

BASE_AT_MOST = 0.15
SFT_AT_LEAST = 0.50
GRPO_GAIN = 0.05
P_ABLATION = 0.001
FAITHFUL = 0.8
STABLE = 0.8  # share of the saves after its entry that an SFT head stayed in the circuit


@dataclass(frozen=True)
class Finding:
    """One row of the findings table."""

    finding: str
    measured: str
    target: str
    reproduced: bool | None  # None: the run has nothing to measure it on

    @property
    def verdict(self) -> str:
        return {True: "reproduced", False: "not reproduced", None: "not measured"}[self.reproduced]


@dataclass(frozen=True)
class Phase:
    """One evaluated model of the run: its per-problem pass rates (index: problem id)."""

    name: str
    step: int
    rates: pd.Series


def _rates(eval_dir: Path, bench: str) -> pd.Series | None:
    table = eval_dir / f"{bench}.parquet"
    if not table.is_file():
        return None
    return pd.read_parquet(table).groupby("problem_id", sort=True)["correct"].mean()


def _stages(run_dir: Path) -> list[tuple[str, Path, int, list[int]]]:
    """(method, directory, global step before it, its saves' local steps) of every stage, in
    training order (`stage{i}-{method}`, saves `checkpoint-{step}`)."""
    out, offset = [], 0
    for d in sorted(Path(run_dir).glob("stage*-*"), key=lambda p: int(p.name[5:].split("-")[0])):
        saves = sorted(int(p.name[11:]) for p in d.glob("checkpoint-*"))
        out.append((d.name.split("-", 1)[1], d, offset, saves))
        offset += max(saves, default=0)
    return out


def phases(run_dir: Path, bench: str = "world") -> list[Phase]:
    """The base and each stage's last evaluated save, in training order."""
    run_dir = Path(run_dir)
    out = []
    if (r := _rates(run_dir / "base" / "eval", bench)) is not None:
        out.append(Phase("base", 0, r))
    for method, stage, offset, saves in _stages(run_dir):
        evaluated = [s for s in saves if (stage / f"checkpoint-{s}/eval/metrics.json").is_file()]
        if (
            evaluated
            and (r := _rates(stage / f"checkpoint-{evaluated[-1]}/eval", bench)) is not None
        ):
            out.append(Phase(method, offset + evaluated[-1], r))
    return out


def _ci(x: np.ndarray) -> str:
    lo, hi = bootstrap_ci(x)
    return f"{x.mean():.3f} [{lo:.3f}, {hi:.3f}]"


def _per_level(rates: pd.Series, levels: pd.Series) -> dict[str, tuple[float, float, float]]:
    out = {}
    joined = pd.DataFrame({"rate": rates, "level": levels.reindex(rates.index)}).dropna()
    for level, g in joined.groupby("level", sort=True):
        x = g["rate"].to_numpy()
        out[f"level {int(level)}"] = (float(x.mean()), *bootstrap_ci(x))
    return out


def _grpo_rewards(run_dir: Path) -> list[float]:
    """The correctness reward at every GRPO step (the last checkpoint's trainer log)."""
    stages = sorted(Path(run_dir).glob("stage*-grpo"))
    if not stages:
        return []
    states = sorted(
        stages[-1].glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name[11:])
    )
    if not states:
        return []
    log = json.loads(states[-1].read_text())["log_history"]
    return [
        e["rewards/correctness_reward/mean"] for e in log if "rewards/correctness_reward/mean" in e
    ]


def _faithfulness(run_dir: Path) -> dict[int, float]:
    """Top-k faithfulness of the primary circuit at every trained save (by global step)."""
    out = {}
    for _, stage, offset, saves in _stages(run_dir):
        for step in saves:
            snap = stage / f"checkpoint-{step}/circuit/snapshot.json"
            if snap.is_file():
                s = json.loads(snap.read_text())
                k = min(s["settings"]["top_k"], s.get("n_edges", s["settings"]["top_k"]))
                faith = {int(kk): v for kk, v in s["faithfulness"].items()}
                out[offset + step] = faith.get(k, float("nan"))
    return out


def _stability(ledger: pd.DataFrame, steps: list[int], heads: list[str]) -> dict[str, float]:
    """For each head: the share of `steps` from its first entry on in which it is in the circuit."""
    out = {}
    for h in heads:
        rows = ledger[(ledger["head"] == h) & ledger.step.isin(steps)].sort_values("step")
        inside = rows["in_circuit"].to_numpy()
        first = int(np.argmax(inside)) if inside.any() else len(inside)
        out[h] = float(inside[first:].mean()) if first < len(inside) else 0.0
    return out


def measure(
    run_dir: Path, problems: list[dict], study: dict | None = None, *, bench: str = "world"
) -> list[Finding]:
    """Every finding the run can measure, from its files and its scaling study's summary."""
    from sparks.track.ledger import primary

    run_dir = Path(run_dir)
    # evaluation tables name a problem `{bench}-{id}` (`load_benchmark`); world tasks `{id}`
    ids = {f"{bench}-{p['id']}": p for p in problems} | {p["id"]: p for p in problems}
    levels = pd.Series({i: p.get("level") for i, p in ids.items()}, dtype="float")
    families = {i: p.get("family") for i, p in ids.items()}
    ph = {p.name: p for p in phases(run_dir, bench)}
    rows: list[Finding] = []

    base, sft, grpo = ph.get("base"), ph.get("sft"), ph.get("grpo")
    if base is not None and sft is not None:
        b, s = base.rates, sft.rates.reindex(base.rates.index)
        p = paired_p(s.to_numpy(), b.to_numpy())
        ok = (
            b.mean() <= BASE_AT_MOST
            and s.mean() >= SFT_AT_LEAST
            and s.mean() > b.mean()
            and p < 0.05
        )
        rows.append(Finding(
            "Post-training turns a base that knows the skills into a solver (SFT)",
            f"pass@1 base {_ci(b.to_numpy())} -> after SFT {_ci(s.to_numpy())}; paired Wilcoxon p {p:.2g} ({len(b)} problems)",
            f"base <= {BASE_AT_MOST:.0%}, SFT >= {SFT_AT_LEAST:.0%}, p < 0.05", bool(ok),
        ))  # fmt: skip
        by = _per_level(s, levels)
        if len(by) >= 2:
            names = sorted(by)
            means = [by[n][0] for n in names]
            falling = all(a > c for a, c in zip(means, means[1:], strict=False))
            apart = by[names[0]][1] > by[names[-1]][2]
            last = grpo or sft
            tail_ids = [i for i, f in families.items() if f == "product" and i in last.rates.index]
            tail = (
                f"; the hardest family (two-digit products) after {last.name}: "
                f"{last.rates.loc[tail_ids].mean():.3f} ({len(tail_ids)} problems)"
                if tail_ids else ""
            )  # fmt: skip
            rows.append(Finding(
                "Levels are difficulty: the trained model solves fewer problems as levels rise",
                "after SFT: " + ", ".join(f"{n} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for n, v in by.items()) + tail,
                "level 1 > level 2 > level 3; level 1's and level 3's intervals apart",
                bool(falling and apart),
            ))  # fmt: skip
    if sft is not None and grpo is not None:
        s, g = sft.rates, grpo.rates.reindex(sft.rates.index)
        p = paired_p(g.to_numpy(), s.to_numpy())
        rewards = _grpo_rewards(run_dir)
        q = max(1, len(rewards) // 4)
        early, late = (
            (float(np.mean(rewards[:q])), float(np.mean(rewards[-q:])))
            if rewards
            else (float("nan"),) * 2
        )
        gain = g.mean() - s.mean()
        ok = gain >= GRPO_GAIN and p < 0.05 and late > early
        rows.append(Finding(
            "GRPO improves on SFT as the correctness reward rises",
            f"pass@1 after SFT {_ci(s.to_numpy())} -> after GRPO {_ci(g.to_numpy())} ({gain:+.3f}); paired Wilcoxon p {p:.2g}; "
            f"correctness reward first quarter {early:.3f} -> last quarter {late:.3f} ({len(rewards)} steps)",
            f"gain >= {GRPO_GAIN * 100:.0f} points, p < 0.05, last quarter above the first", bool(ok),
        ))  # fmt: skip

    ledger_file = run_dir / "ledger.parquet"
    if ledger_file.is_file():
        rows += _head_findings(
            primary(pd.read_parquet(ledger_file)), pd.read_parquet(ledger_file), run_dir
        )
    if study is not None:
        rows += _study_findings(study)
    faith = _faithfulness(run_dir)
    if faith:
        worst = min(faith, key=lambda k: faith[k])
        rows.append(Finding(
            "The circuits are faithful (EAP-IG top-k recovers the model's behaviour)",
            f"top-k faithfulness at every trained save: min {faith[worst]:.3f} (step {worst}), "
            f"median {float(np.median(list(faith.values()))):.3f} over {len(faith)} saves",
            f">= {FAITHFUL} at every save", bool(faith[worst] >= FAITHFUL),
        ))  # fmt: skip
    return rows


def _stage_steps(run_dir: Path) -> dict[str, list[int]]:
    """Global steps of every save, per stage method."""
    return {method: [offset + s for s in saves] for method, _, offset, saves in _stages(run_dir)}


def _head_findings(ledger: pd.DataFrame, every_set: pd.DataFrame, run_dir: Path) -> list[Finding]:
    rows = []
    steps = _stage_steps(run_dir)
    if sft := steps.get("sft"):
        at = ledger[ledger.step == sft[-1]]
        emergent = at.loc[at.emergent, "head"].tolist()
        stab = _stability(ledger, sft, emergent)
        stable = [h for h, v in stab.items() if v >= STABLE]
        rows.append(Finding(
            "SFT adds new heads to the circuit, and they stay",
            f"{len(emergent)} emergent heads at SFT's last save ({', '.join(f'{h} {stab[h]:.2f}' for h in emergent) or 'none'}: "
            f"share of SFT's saves from its entry on that it stayed); {len(stable)} stayed in >= {STABLE:.0%}",
            f"at least one emergent head that stays in >= {STABLE:.0%} of the saves after it entered",
            bool(stable),
        ))  # fmt: skip
    if grpo := steps.get("grpo"):
        t = ledger[ledger.step.isin(grpo)]
        act = t[t.activated].groupby("step")["head"].apply(list).to_dict()
        pru = t[t.pruned].groupby("step")["head"].apply(list).to_dict()
        shown = "; ".join(
            f"step {s}: +{','.join(act.get(s, [])) or '-'} -{','.join(pru.get(s, [])) or '-'}"
            for s in grpo if s in act or s in pru
        )  # fmt: skip
        rows.append(Finding(
            "GRPO activates and prunes a few heads as the reward moves",
            f"{sum(map(len, act.values()))} activations and {sum(map(len, pru.values()))} prunings over {len(grpo)} GRPO saves"
            + (f" ({shown})" if shown else ""),
            "heads both enter and leave the circuit during GRPO",
            bool(act) and bool(pru),
        ))  # fmt: skip
    if "set" in every_set and every_set["set"].nunique() > 1:
        last = every_set[(every_set.step == every_set.step.max()) & every_set.in_circuit]
        by_set = last.groupby("set")["head"].apply(set).to_dict()
        specific = {
            s: sorted(h - set().union(*(o for n, o in by_set.items() if n != s)))
            for s, h in by_set.items()
        }
        shared = sorted(set.intersection(*by_set.values())) if by_set else []
        rows.append(Finding(
            "Circuits are task-specific: some heads serve one kind of problem only",
            f"at the last save, shared by all {len(by_set)} pair sets: {', '.join(shared) or 'none'}; "
            + "; ".join(f"only {s}: {', '.join(h) or 'none'}" for s, h in specific.items()),
            "at least one head specific to one pair set", any(specific.values()),
        ))  # fmt: skip
    return rows


def _study_findings(study: dict) -> list[Finding]:
    rows = []
    flips = {r["variant"]: r for r in study["flips"]}
    by = pd.DataFrame(study["pass_by_bucket"])
    ctrl = {r["scale"]: r for r in study.get("control", [])}
    heads = ", ".join(study.get("heads", []))
    if "scale_0" in flips:
        f = flips["scale_0"]
        c = ctrl.get(0.0)
        measured = (
            f"ablating {heads}: solved->failed {f['solved->failed']}, failed->solved {f['failed->solved']} "
            f"(exact McNemar p {f['p_value']:.2g})"
        )
        ok = f["p_value"] < P_ABLATION and f["solved->failed"] > f["failed->solved"]
        if c is not None:
            measured += (
                f"; pass@1 {c['baseline']:.3f} -> {c['studied']:.3f} [{c['studied_ci_low']:.3f}, {c['studied_ci_high']:.3f}], "
                f"random heads ({c['draws']} draws {c['pool']}) -> {c['control']:.3f} [{c['control_ci_low']:.3f}, {c['control_ci_high']:.3f}] "
                f"(draws {c['control_draws']}); studied vs random paired Wilcoxon p {c['p_value']:.2g}"
            )
            ok = ok and c["studied"] < c["control"] and c["p_value"] < 0.05
        rows.append(Finding(
            "Ablating the emergent heads hurts accuracy, more than ablating random heads",
            measured,
            f"McNemar p < {P_ABLATION}; below the random-head control with paired p < 0.05", bool(ok),
        ))  # fmt: skip
    up = [v for v in flips if v.startswith("scale_") and float(v[6:]) > 1]
    if up and not by.empty:
        v = max(up, key=lambda n: float(n[6:]))
        base = by[by.variant == "baseline"].set_index("bucket")
        var = by[by.variant == v].set_index("bucket")
        changes = {
            b: (var.loc[b, "pass@1"] - base.loc[b, "pass@1"], var.loc[b], base.loc[b])
            for b in base.index if b in var.index
        }  # fmt: skip
        ordered = sorted(changes, key=lambda b: [int(x) for x in re.findall(r"\d+", b)] or [0])
        easy, hard = ordered[0], ordered[-1]
        rows.append(Finding(
            "Scaling the heads up trades easy problems for hard ones",
            f"x{float(v[6:]):g}: " + ", ".join(
                f"{b} {base.loc[b, 'pass@1']:.3f} -> {var.loc[b, 'pass@1']:.3f} [{var.loc[b, 'ci_low']:.3f}, {var.loc[b, 'ci_high']:.3f}]"
                for b in ordered
            ) + f"; flips p {flips[v]['p_value']:.2g}",
            f"{easy} falls while {hard} rises", bool(changes[easy][0] < 0 < changes[hard][0]),
        ))  # fmt: skip
    return rows


def to_markdown(rows: list[Finding]) -> str:
    """The findings as a markdown table (the README's)."""
    lines = [
        "| the paper's finding | measured here (95 % intervals, paired tests) | target | verdict |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {r.finding} | {r.measured} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines) + "\n"


def write(rows: list[Finding], out_dir: Path) -> Path:
    """findings.md and findings.json in `out_dir`; returns the markdown's path."""
    out_dir = Path(out_dir)
    (out_dir / "findings.json").write_text(
        json.dumps([asdict(r) | {"verdict": r.verdict} for r in rows], indent=2)
    )
    md = out_dir / "findings.md"
    md.write_text(to_markdown(rows))
    return md
