"""The head ledger: every head at every save, and what changed since the last one (pure pandas).

Columns: step, head ("L{layer}H{head}"), layer, index, score (the head's node score), share (its
share of all heads' |score|, the paper's normalised importance I), stability (bootstrap frequency),
in_circuit, emergent (in the circuit now and not in the base model's), activated (entered since the
previous save), pruned (left since the previous save).
"""

from __future__ import annotations

import pandas as pd

from sparks.circuits.snapshot import CircuitSnapshot


def head_table(snap: CircuitSnapshot) -> pd.DataFrame:
    """One row per head of one snapshot."""
    g = snap.graph
    scores = snap.head_scores().flatten().double()
    share = scores.abs() / scores.abs().sum().clamp_min(1e-30)
    members = set(snap.heads)
    names = [f"L{l}H{h}" for l in range(g.n_layers) for h in range(g.n_heads)]
    return pd.DataFrame(
        {
            "step": snap.step,
            "head": names,
            "layer": [l for l in range(g.n_layers) for _ in range(g.n_heads)],
            "index": [h for _ in range(g.n_layers) for h in range(g.n_heads)],
            "score": scores.numpy(),
            "share": share.numpy(),
            "stability": snap.head_stability.flatten().double().numpy(),
            "in_circuit": [n in members for n in names],
        }
    )


def build_ledger(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack head tables (the first is the base model's) and mark emergent/activated/pruned heads."""
    if not tables:
        raise ValueError("no snapshots: the ledger needs at least the base model's")
    df = pd.concat(tables, ignore_index=True).sort_values(["step", "layer", "index"], kind="stable")
    base_step = tables[0]["step"].iloc[0]
    base = set(df.loc[(df.step == base_step) & df.in_circuit, "head"])
    prev = df.groupby("head", sort=False)["in_circuit"].shift(1)  # same head, previous save
    first = prev.isna()
    prev = prev.fillna(False).astype(bool)
    df["emergent"] = df.in_circuit & ~df["head"].isin(base)
    df["activated"] = df.in_circuit & ~prev & ~first
    df["pruned"] = ~df.in_circuit & prev & ~first
    return df.reset_index(drop=True)


def step_summary(ledger: pd.DataFrame) -> pd.DataFrame:
    """Per save: heads in the circuit, emergent, activated and pruned counts."""
    return (
        ledger.groupby("step")
        .agg(
            heads=("in_circuit", "sum"),
            emergent=("emergent", "sum"),
            activated=("activated", "sum"),
            pruned=("pruned", "sum"),
        )
        .astype(int)
        .reset_index()
    )
