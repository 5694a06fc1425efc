"""The head ledger's emergent / activated / pruned logic, on hand-built snapshots."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from sparks.circuits.graph import Circuit, Graph
from sparks.circuits.snapshot import CircuitSnapshot
from sparks.track.ledger import build_ledger, head_table, step_summary

G = Graph(n_layers=2, n_heads=2, n_kv_heads=1)  # heads L0H0 L0H1 L1H0 L1H1


def _snap(step: int, heads: list[str]) -> CircuitSnapshot:
    node = torch.zeros(G.n_up)
    for i in range(G.n_up):
        node[i] = -(i + 1.0)  # distinct, signed
    return CircuitSnapshot(
        step=step,
        fingerprint="x",
        settings={},
        graph=G,
        edge_scores=torch.zeros(G.n_up, G.n_down),
        node_scores=node,
        circuit=Circuit(
            torch.zeros(G.n_up, G.n_down, dtype=torch.bool),
            torch.zeros(G.n_up, dtype=torch.bool),
            heads,
        ),
        head_stability=torch.full((2, 2), 0.5),
        faithfulness={},
        m_clean=1.0,
        m_corrupt=0.0,
        seconds=0.0,
    )


def _states(ledger: pd.DataFrame, step: int, col: str) -> set[str]:
    return set(ledger.loc[(ledger.step == step) & ledger[col], "head"])


def test_emergent_activated_and_pruned_across_saves():
    snaps = [
        _snap(0, ["L0H0", "L1H0"]),  # base
        _snap(10, ["L0H0", "L1H0", "L1H1"]),  # L1H1 enters: activated and emergent
        _snap(
            20, ["L0H0", "L1H1"]
        ),  # L1H0 leaves: pruned; L1H1 stays emergent, not activated again
        _snap(
            30, ["L0H0", "L1H0", "L1H1", "L0H1"]
        ),  # L1H0 returns: activated but not emergent (in base)
    ]
    ledger = build_ledger([head_table(s) for s in snaps])
    assert len(ledger) == 4 * 4
    assert (
        _states(ledger, 0, "activated")
        == _states(ledger, 0, "pruned")
        == _states(ledger, 0, "emergent")
        == set()
    )
    assert _states(ledger, 10, "activated") == {"L1H1"} and _states(ledger, 10, "emergent") == {
        "L1H1"
    }
    assert _states(ledger, 20, "pruned") == {"L1H0"} and _states(ledger, 20, "activated") == set()
    assert _states(ledger, 20, "emergent") == {"L1H1"}
    assert _states(ledger, 30, "activated") == {"L1H0", "L0H1"}
    assert _states(ledger, 30, "emergent") == {"L1H1", "L0H1"}
    summary = step_summary(ledger)
    assert summary.to_dict("list") == {
        "step": [0, 10, 20, 30],
        "heads": [2, 3, 2, 4],
        "emergent": [0, 1, 1, 2],
        "activated": [0, 1, 0, 2],
        "pruned": [0, 0, 1, 0],
        "failed": [0, 0, 0, 0],
    }


def test_head_table_names_heads_and_shares_sum_to_one():
    t = head_table(_snap(5, ["L1H1"]))
    assert t["head"].tolist() == ["L0H0", "L0H1", "L1H0", "L1H1"]
    assert t["share"].sum() == pytest.approx(1.0)
    assert t.loc[t["head"] == "L1H1", "in_circuit"].item() and t["in_circuit"].sum() == 1
    assert (t["score"] < 0).all()  # signed node scores are kept


def test_ledger_order_does_not_depend_on_input_order():
    a = build_ledger([head_table(_snap(0, ["L0H0"])), head_table(_snap(10, ["L0H1"]))])
    assert _states(a, 10, "pruned") == {"L0H0"} and _states(a, 10, "activated") == {"L0H1"}


def test_empty_ledger_is_refused():
    with pytest.raises(ValueError, match="at least the base model's"):
        build_ledger([])


def test_a_failed_snapshot_is_marked_and_skipped_when_comparing_saves():
    """A save whose snapshot failed (NaN) has no circuit; the saves around it are compared with
    each other, so its heads are not counted as pruned and then activated again."""
    from sparks.circuits.snapshot import FailedSnapshot

    tables = [
        head_table(_snap(0, ["L0H0", "L1H0"])),
        head_table(FailedSnapshot(10, G, "the metric on the clean run is not finite")),
        head_table(_snap(20, ["L0H0", "L1H1"])),
    ]
    ledger = build_ledger(tables)
    failed = ledger[ledger.step == 10]
    assert failed.failed.all() and not failed.in_circuit.any() and failed.score.isna().all()
    assert not (failed.pruned.any() or failed.activated.any())
    assert _states(ledger, 20, "pruned") == {"L1H0"} and _states(ledger, 20, "activated") == {
        "L1H1"
    }
    assert step_summary(ledger).set_index("step").failed.to_dict() == {0: 0, 10: 1, 20: 0}
