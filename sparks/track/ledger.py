"""The head ledger: every head at every save, and what changed since the last one (pure pandas).

Columns: step, head ("L{layer}H{head}"), layer, index, score (the head's node score), share (its
share of all heads' |score|), edge_share (the |scores| of the head's outgoing edges as a share of
all edges' |scores|: the paper's normalised importance I, behind its E score), stability (bootstrap
frequency),
in_circuit, emergent (in the circuit now and not in the base model's), activated (entered since the
previous save), pruned (left since the previous save), failed (the save's snapshot could not be
built: NaN/inf; its heads are in no circuit, and the saves around it are compared with each other).
"""

from __future__ import annotations

import pandas as pd

from sparks.circuits.snapshot import CircuitSnapshot, FailedSnapshot


def head_table(snap: CircuitSnapshot | FailedSnapshot) -> pd.DataFrame:
    """One row per head of one snapshot (a failed one: NaN scores, no circuit, failed=True)."""
    g = snap.graph
    if isinstance(snap, FailedSnapshot):
        n = g.n_layers * g.n_heads
        return pd.DataFrame(
            {
                "step": snap.step,
                "head": [f"L{l}H{h}" for l in range(g.n_layers) for h in range(g.n_heads)],
                "layer": [l for l in range(g.n_layers) for _ in range(g.n_heads)],
                "index": [h for _ in range(g.n_layers) for h in range(g.n_heads)],
                "score": [float("nan")] * n,
                "share": [float("nan")] * n,
                "edge_share": [float("nan")] * n,
                "stability": [float("nan")] * n,
                "in_circuit": [False] * n,
                "failed": [True] * n,
                "ig_steps": [float("nan")] * n,
                "completeness_error": [float("nan")] * n,
            }
        )
    scores = snap.head_scores().flatten().double()
    share = scores.abs() / scores.abs().sum().clamp_min(1e-30)
    edges = snap.edge_scores.double().abs()  # [n_up, n_down]
    out_edges = edges.sum(1)[g.head_index.flatten()]
    edge_share = out_edges / edges.sum().clamp_min(1e-30)
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
            "edge_share": edge_share.numpy(),
            "stability": snap.head_stability.flatten().double().numpy(),
            "in_circuit": [n in members for n in names],
            "failed": False,
            "ig_steps": float(snap.settings.get("steps", "nan")),  # per save with steps: auto
            "completeness_error": snap.completeness_error,
        }
    )


def build_ledger(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack head tables (the first is the base model's) and mark emergent/activated/pruned heads."""
    if not tables:
        raise ValueError("no snapshots: the ledger needs at least the base model's")
    df = pd.concat(tables, ignore_index=True).sort_values(["step", "layer", "index"], kind="stable")
    if "failed" not in df:
        df["failed"] = False
    df["failed"] = df["failed"].fillna(False).astype(bool)
    base_step = tables[0]["step"].iloc[0]
    base = set(df.loc[(df.step == base_step) & df.in_circuit, "head"])
    ok = ~df.failed
    # same head, previous save that has a snapshot
    prev = df[ok].groupby("head", sort=False)["in_circuit"].shift(1).reindex(df.index)
    first = prev.isna()
    prev = prev.fillna(False).astype(bool)
    df["emergent"] = df.in_circuit & ~df["head"].isin(base)
    df["activated"] = df.in_circuit & ~prev & ~first & ok
    df["pruned"] = ~df.in_circuit & prev & ~first & ok
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
            failed=("failed", "max"),
        )
        .astype(int)
        .reset_index()
    )


def ledger_of_sets(tables: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """One ledger for every pair set (`set` column; '' for a run with one set), the primary set
    (the first) first; each set's heads are emergent against its own base snapshot."""
    parts = [build_ledger(t).assign(set=name) for name, t in tables.items() if t]
    if not parts:
        raise ValueError("no snapshots: the ledger needs at least the base model's")
    return pd.concat(parts, ignore_index=True)


def primary(ledger: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ledger's primary pair set (all of a one-set or older ledger)."""
    if "set" not in ledger or ledger.empty:
        return ledger
    return ledger[ledger["set"] == ledger["set"].iloc[0]].reset_index(drop=True)
