"""The random-head control of an ablation or scaling study: is the head set special, or would any
heads do?

1. draws: `draws` distinct sets (while the pool has that many) of as many heads as the studied
   set, each drawn without replacement from the heads outside the circuit (and outside the set);
   where the circuit leaves too few, from all heads outside the set, and the table says which
   pool it used;
2. every draw is scaled like the studied set and evaluated on the same problems and sampling;
3. the table, per benchmark and scale: the studied set's pass@1 and the draws' mean, each with a
   95 % bootstrap interval over problems, each draw's own pass@1, and a paired test (Wilcoxon
   signed-rank over problems) of the studied set against the draws' mean.
"""

from __future__ import annotations

import random
from math import comb

import numpy as np
import pandas as pd

from sparks.evaluate.metrics import bootstrap_ci, paired_p


def head_names(n_layers: int, n_heads: int) -> list[str]:
    return [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]


def draw_sets(
    every: list[str], studied: list[str], circuit: set[str] | None, *, draws: int, seed: int
) -> tuple[list[list[str]], str]:
    """`draws` random head sets of len(studied) heads, and the pool they came from.

    >>> sets, pool = draw_sets(head_names(2, 4), ["L0H0"], {"L0H0", "L1H1"}, draws=2, seed=0)
    >>> pool, [len(s) for s in sets], any({"L0H0", "L1H1"} & set(s) for s in sets)
    ('outside the circuit', [1, 1], False)
    """
    k = len(studied)
    outside_set = [h for h in every if h not in set(studied)]
    pool, name = outside_set, "outside the studied heads"
    if circuit is not None:
        outside_circuit = [h for h in outside_set if h not in circuit]
        if len(outside_circuit) >= k:
            pool, name = outside_circuit, "outside the circuit"
    if len(pool) < k:
        raise ValueError(
            f"a random-head control needs {k} heads outside the {len(studied)} studied ones; the "
            f"model has {len(every)} heads in all: study fewer heads or set control: none"
        )
    rng = random.Random(seed)
    sets: list[list[str]] = []
    distinct = comb(len(pool), k) >= draws  # else some draws must repeat
    while len(sets) < draws:
        drawn = sorted(rng.sample(pool, k), key=every.index)
        if drawn not in sets or not distinct:
            sets.append(drawn)
    return sets, name


def _rates(tables: dict[str, pd.DataFrame], bench: str) -> pd.Series:
    return tables[bench].groupby("problem_id", sort=True)["correct"].mean()


def control_table(
    samples: dict[str, dict[str, pd.DataFrame]],
    studied: dict[float, str],
    controls: dict[str, float],
    *,
    pool: str,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per benchmark x control scale: the studied variant against its random draws.

    `studied` maps a scale to the studied set's variant; `controls` maps each control variant to
    its scale; `samples[variant][benchmark]` are per-sample tables."""
    rows = []
    base = samples["baseline"]
    for bench in sorted(base):
        b = _rates(base, bench)
        for scale in sorted(set(controls.values())):
            t = _rates(samples[studied[scale]], bench).reindex(b.index)
            names = [v for v, s in controls.items() if s == scale]
            draws = pd.concat([_rates(samples[v], bench).reindex(b.index) for v in names], axis=1)
            c = draws.mean(axis=1)
            t_lo, t_hi = bootstrap_ci(t.to_numpy(), seed=seed)
            c_lo, c_hi = bootstrap_ci(c.to_numpy(), seed=seed)
            rows.append(
                {"benchmark": bench, "scale": scale, "problems": len(b), "draws": len(names),
                 "pool": pool, "baseline": float(b.mean()),
                 "studied": float(t.mean()), "studied_ci_low": t_lo, "studied_ci_high": t_hi,
                 "control": float(c.mean()), "control_ci_low": c_lo, "control_ci_high": c_hi,
                 "control_draws": ", ".join(f"{x:.3f}" for x in draws.mean(axis=0)),
                 "studied_change": float(t.mean() - b.mean()),
                 "control_change": float(c.mean() - b.mean()),
                 "p_value": paired_p(t.to_numpy(), c.to_numpy())}
            )  # fmt: skip
    return pd.DataFrame(rows)


def mean_by_bucket(by_bucket: pd.DataFrame, controls: dict[str, float]) -> pd.DataFrame:
    """The control draws' pass@1 averaged per benchmark x bucket x scale (for the figure)."""
    t = by_bucket[by_bucket["variant"].isin(controls)]
    t = t.assign(scale=t["variant"].map(controls))
    return t.groupby(["benchmark", "bucket", "scale"], as_index=False)["pass@1"].agg(np.mean)


def control_lines(rows: list[dict]) -> list[str]:
    """The random-head control, one line per benchmark x scale."""
    if not rows:
        return []
    first = rows[0]
    out = [
        f"random-head control ({first['draws']} draws {first['pool']}; studied against random "
        "heads: paired Wilcoxon over problems):"
    ]
    for r in rows:
        out.append(
            f"  x{r['scale']:g} {r['benchmark']:8} studied heads {r['studied']:.3f} "
            f"[{r['studied_ci_low']:.3f}, {r['studied_ci_high']:.3f}] vs random heads "
            f"{r['control']:.3f} [{r['control_ci_low']:.3f}, {r['control_ci_high']:.3f}] "
            f"(draws {r['control_draws']}; baseline {r['baseline']:.3f}), p {r['p_value']:.3g}"
        )
    return out
