"""The paper's head analyses as pure functions of head tables and series (pandas in, pandas out).

A head table has one row per head (ledger columns: head, layer, index, in_circuit, stability,
edge_share, ...). "Stable" means bootstrap stability >= the threshold the caller gives.

1. emergent_table: circuit size of the base and of each model, heads gained and lost, raw and stable;
2. activation_frequency: per head, the share of a series' saves in which it is in the circuit;
3. cohorts: heads grouped by the save at which they first entered, and how many are still in later;
4. e_scores: E = (I_post - I_pre) / (I_post + I_pre + eps), I = the head's share of |edge score|;
5. dynamics / correlation / membership_vs_reward: churn and circuit size against reward, per save;
6. retention: of the heads that entered during a series, the share still in at its end; churn;
7. think_sets: heads only in the thinking-off circuit (compensatory), only in the on circuit, shared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparks.analysis.series import Series

EPS = 1e-6
DYNAMICS = [
    "series",
    "step",
    "heads",
    "activated",
    "pruned",
    "churn",
    "activated_stability",
    "pruned_stability",
    "reward",
]


def circuit(table: pd.DataFrame, threshold: float | None = None) -> set[str]:
    """The table's circuit heads; with `threshold`, only those at least that stable."""
    rows = table[table.in_circuit]
    if threshold is not None:
        rows = rows[rows.stability >= threshold]
    return set(rows["head"])


def _mean_stability(table: pd.DataFrame, heads: set[str]) -> float:
    s = table.loc[table["head"].isin(heads), "stability"]
    return float(s.mean()) if len(s) else float("nan")


def emergent_table(
    base: pd.DataFrame, models: dict[str, pd.DataFrame], threshold: float
) -> pd.DataFrame:
    """The paper's table, one row per model (the base first). gained: in the model's circuit and
    not in the base's; lost: the reverse. The *_stable counts take only heads whose stability (in
    the circuit that has them) is >= threshold; *_stability is the counted heads' mean stability."""
    b_all = circuit(base)
    rows = [
        {
            "model": "base",
            "heads": len(b_all),
            "heads_stable": len(circuit(base, threshold)),
            "heads_stability": _mean_stability(base, b_all),
            "gained": 0,
            "gained_stable": 0,
            "gained_stability": float("nan"),
            "lost": 0,
            "lost_stable": 0,
            "lost_stability": float("nan"),
        }
    ]
    for name, t in models.items():
        m_all = circuit(t)
        gained, lost = m_all - b_all, b_all - m_all
        rows.append(
            {
                "model": name,
                "heads": len(m_all),
                "heads_stable": len(circuit(t, threshold)),
                "heads_stability": _mean_stability(t, m_all),
                "gained": len(gained),
                "gained_stable": len(gained & circuit(t, threshold)),
                "gained_stability": _mean_stability(t, gained),
                "lost": len(lost),
                "lost_stable": len(lost & circuit(base, threshold)),
                "lost_stability": _mean_stability(base, lost),
            }
        )
    return pd.DataFrame(rows)


def emergent_heads(base: pd.DataFrame, model: pd.DataFrame, threshold: float | None) -> list[str]:
    """Heads in `model`'s circuit (stable ones, with a threshold) and not in the base's, by layer."""
    heads = circuit(model, threshold) - circuit(base)
    return _ordered(model, heads)


def _ordered(table: pd.DataFrame, heads: set[str]) -> list[str]:
    t = table[table["head"].isin(heads)].sort_values(["layer", "index"])
    return t["head"].tolist()


def activation_frequency(s: Series) -> pd.DataFrame:
    """Per head: in how many of the series' saves (not its start) it is in the circuit, and the share."""
    rows = s.ledger[s.ledger.step.isin(s.saves)]
    n = len(s.saves)
    f = rows.groupby(["head", "layer", "index"], sort=False)["in_circuit"].sum().reset_index()
    f = f.rename(columns={"in_circuit": "saves_in"})
    f["saves"] = n
    f["frequency"] = f["saves_in"] / max(n, 1)
    f["series"] = s.name
    return f.sort_values(["layer", "index"]).reset_index(drop=True)


def _membership(s: Series) -> pd.DataFrame:
    """heads x steps (the start and every save) of in_circuit."""
    steps = [s.start, *s.saves]
    rows = s.ledger[s.ledger.step.isin(steps)]
    return rows.pivot(index="head", columns="step", values="in_circuit").loc[:, steps].astype(bool)


def cohorts(s: Series) -> pd.DataFrame:
    """Long table: cohort (the step at which its heads first entered; the start step for heads
    already in), size, step (that save or a later one) and still_in (of the cohort, in at `step`)."""
    m = _membership(s)
    steps = list(m.columns)
    first = m.idxmax(axis=1)[m.any(axis=1)]  # first step in the circuit
    rows = []
    for c in steps:
        members = first.index[first == c]
        if len(members) == 0:
            continue
        for step in steps[steps.index(c) :]:
            still = set(members[m.loc[members, step].to_numpy()])
            rows.append(
                {
                    "series": s.name,
                    "cohort": int(c),
                    "size": len(members),
                    "step": int(step),
                    "still_in": len(still),
                    "stability": _mean_stability(s.at(step), still),
                }
            )
    return pd.DataFrame(rows, columns=["series", "cohort", "size", "step", "still_in", "stability"])


def e_scores(pre: pd.DataFrame, post: pd.DataFrame, *, eps: float = EPS) -> pd.DataFrame:
    """Per head: I_pre, I_post (share of |edge score|) and E in [-1, 1]; positive = gained weight."""
    a = pre.set_index("head")[["layer", "index", "edge_share"]]
    b = post.set_index("head")["edge_share"]
    out = a.rename(columns={"edge_share": "I_pre"}).assign(I_post=b.reindex(a.index))
    out["E"] = (out.I_post - out.I_pre) / (out.I_post + out.I_pre + eps)
    return out.reset_index()


def dynamics(s: Series) -> pd.DataFrame:
    """Per save: circuit size, heads activated and pruned since the previous save, churn
    (activated + pruned) and the mean reward logged since the previous save (NaN without rewards)."""
    steps = [s.start, *s.saves]
    rows = []
    for prev, step in zip(steps, steps[1:], strict=False):
        now = s.at(step)
        r = s.rewards[(s.rewards.index > prev) & (s.rewards.index <= step)]
        activated, pruned = int(now.activated.sum()), int(now.pruned.sum())
        rows.append(
            {
                "series": s.name,
                "step": int(step),
                "heads": int(now.in_circuit.sum()),
                "activated": activated,
                "pruned": pruned,
                "churn": activated + pruned,
                # how sure each count is: the activated heads' stability now, the pruned ones' before
                "activated_stability": _mean_stability(now, set(now.loc[now.activated, "head"])),
                "pruned_stability": _mean_stability(s.at(prev), set(now.loc[now.pruned, "head"])),
                "reward": float(r.mean()) if len(r) else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=DYNAMICS)


def correlation(x, y, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Pearson r of x and y with a 95% bootstrap interval over the points (NaN when it is not
    defined: fewer than 3 points or a constant series)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    nan = {"r": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": int(len(x))}
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return nan
    r = float(np.corrcoef(x, y)[0, 1])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    xs, ys = x[idx], y[idx]
    xc, yc = xs - xs.mean(1, keepdims=True), ys - ys.mean(1, keepdims=True)
    den = np.sqrt((xc**2).sum(1) * (yc**2).sum(1))
    boot = (xc * yc).sum(1)[den > 0] / den[den > 0]
    return {
        "r": r,
        "ci_low": float(np.percentile(boot, 2.5)),
        "ci_high": float(np.percentile(boot, 97.5)),
        "n": int(len(x)),
    }


def membership_vs_reward(s: Series) -> pd.DataFrame:
    """Per head ever in the circuit during the series: saves in, and the correlation (point-
    biserial) of its membership with the reward across saves."""
    d = dynamics(s).set_index("step")
    m = _membership(s).loc[:, list(d.index)]
    m = m[m.any(axis=1)]
    rows = []
    for head, member in m.iterrows():
        c = correlation(member.astype(float).to_numpy(), d.reward.to_numpy(), n_boot=500)
        rows.append({"series": s.name, "head": head, "saves_in": int(member.sum()), **c})
    out = pd.DataFrame(rows, columns=["series", "head", "saves_in", "r", "ci_low", "ci_high", "n"])
    return out.sort_values("r", ascending=False, na_position="last").reset_index(drop=True)


def retention(s: Series) -> dict:
    """Two numbers per series. retention: of the heads that entered the circuit at one of its saves
    (activated), the share still in at the last save. churn: heads activated + pruned per save
    (churn_rate: the same over the mean circuit size)."""
    saves = s.saves
    rows = s.ledger[s.ledger.step.isin(saves)]
    entered = set(rows.loc[rows.activated, "head"])
    last = circuit(s.at(saves[-1])) if saves else set()
    d = dynamics(s)
    churn = float(d.churn.mean()) if len(d) else float("nan")
    size = float(d.heads.mean()) if len(d) else float("nan")
    return {
        "series": s.name,
        "method": s.method,
        "saves": len(saves),
        "entered": len(entered),
        "retained": len(entered & last),
        "retention": len(entered & last) / len(entered) if entered else float("nan"),
        "churn_per_save": churn,
        "churn_rate": churn / size if size else float("nan"),
        "mean_heads": size,
    }


def think_sets(on: pd.DataFrame, off: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Heads only in the thinking-off circuit (compensatory), only in the on circuit, and in both:
    counts raw and stable, mean stability, and the heads themselves."""
    a, b = circuit(on), circuit(off)
    groups = {
        "compensatory (off only)": (b - a, off),
        "on only": (a - b, on),
        "shared": (a & b, on),
    }
    rows = []
    for name, (heads, table) in groups.items():
        stable = {h for h in heads if h in circuit(table, threshold)}
        if name == "shared":
            stable = heads & circuit(on, threshold) & circuit(off, threshold)
        rows.append(
            {
                "set": name,
                "heads": len(heads),
                "heads_stable": len(stable),
                "mean_stability": _mean_stability(table, heads),
                "members": ",".join(_ordered(table, heads)),
            }
        )
    return pd.DataFrame(rows)
