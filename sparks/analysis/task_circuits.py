"""Task-specific circuits: which heads serve one pair set (a benchmark, a difficulty) and which
serve every set, per series, from a run's ledger of several pair sets (`set` column).

At each save, with C_s the circuit of set s: a head is `shared` when it is in every set's circuit,
`only <s>` when it is in s's circuit and no other's, and `several` when in some but not all (with
three or more sets). The table lists every head in some circuit at the series' last save, with its
status there and its stability: the share of the series' saves at which the head had that same
status.
"""

from __future__ import annotations

import pandas as pd


def statuses(rows: pd.DataFrame, sets: list[str]) -> dict[str, str]:
    """head -> status at one save, from that save's ledger rows of every set."""
    members: dict[str, set[str]] = {}
    for r in rows[rows.in_circuit & ~rows.failed].itertuples():
        members.setdefault(r.head, set()).add(r.set)
    out = {}
    for head, ins in members.items():
        if len(ins) == len(sets):
            out[head] = "shared"
        elif len(ins) == 1:
            out[head] = f"only {next(iter(ins))}"
        else:
            out[head] = "several"
    return out


def set_circuits(series) -> pd.DataFrame:
    """Heads of `series` at its last save by pair-set status, with their stability over its saves.
    Empty when the series' run has a single pair set."""
    cols = ["series", "head", "layer", "index", "status", "stability", "saves"]
    ledger = series.sets
    if ledger is None or ledger.empty or ledger["set"].nunique() < 2:
        return pd.DataFrame(columns=cols)
    sets = list(dict.fromkeys(ledger["set"]))
    steps = [s for s in series.saves if s in set(ledger.step)]
    if not steps:
        return pd.DataFrame(columns=cols)
    per_save = {s: statuses(ledger[ledger.step == s], sets) for s in steps}
    last = per_save[steps[-1]]
    where = ledger.drop_duplicates("head").set_index("head")
    rows = [
        {
            "series": series.name,
            "head": h,
            "layer": int(where.loc[h, "layer"]),
            "index": int(where.loc[h, "index"]),
            "status": st,
            "stability": sum(per_save[s].get(h) == st for s in steps) / len(steps),
            "saves": len(steps),
        }
        for h, st in last.items()
    ]
    order = {"shared": 0, "several": 2}
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(
        ["status", "layer", "index"],
        key=lambda c: c.map(lambda v: order.get(v, 1)) if c.name == "status" else c,
    ).reset_index(drop=True)
