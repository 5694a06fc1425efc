"""The graph's edges, top-k selection, path pruning and circuit heads, on hand-built scores."""

from __future__ import annotations

import pytest
import torch

from sparks.circuits.graph import (
    Graph,
    _prune,
    find_circuit,
    head_stability,
    prune_to_paths,
    select_edges,
)


def test_graph_counts_match_the_architecture():
    g = Graph(n_layers=2, n_heads=4, n_kv_heads=2)
    assert g.n_up == 1 + 2 * 5 and g.n_down == 2 * (4 + 2 + 2 + 1) + 1
    assert g.up_names[:6] == ["input", "L0H0", "L0H1", "L0H2", "L0H3", "M0"]
    assert g.down_names[:9] == [
        "L0H0.q",
        "L0H1.q",
        "L0H2.q",
        "L0H3.q",
        "L0KV0.k",
        "L0KV1.k",
        "L0KV0.v",
        "L0KV1.v",
        "M0",
    ]
    v = g.valid
    assert (
        v[:, g.down_names.index("L0H0.q")].tolist() == [True] + [False] * 10
    )  # only the input precedes layer 0
    assert v[:, g.down_names.index("M0")].sum() == 5  # input + layer-0 heads
    assert v[:, -1].all()  # everything reaches the logits
    assert v[g.up_names.index("M1")].tolist() == [False] * (g.n_down - 1) + [
        True
    ]  # last MLP: logits only


def test_qwen2_5_math_1_5b_graph_size():
    # 28 layers x 12 heads: 336 heads, as CIRCUIT_NOTES gives. The reference EAP-IG counts 183,555
    # edges because it gives every query head its own k and v input; with one k and v input per
    # key/value head (2 here, grouped-query attention) the same model has 84,715.
    assert Graph(28, 12, 2).head_index.numel() == 336
    assert int(Graph(28, 12, 2).valid.sum()) == 84_715
    assert int(Graph(28, 12, 12).valid.sum()) == 183_555


def _scores(g: Graph, edges: list[tuple[str, str, float]]) -> torch.Tensor:
    s = torch.zeros(g.n_up, g.n_down)
    for u, v, x in edges:
        s[g.up_names.index(u), g.down_names.index(v)] = x
    return s


def test_pruning_keeps_only_paths_from_input_to_logits():
    g = Graph(2, 2, 1)
    s = _scores(
        g,
        [
            ("input", "L0H0.q", 5.0),
            ("L0H0", "L1H1.q", -4.0),
            ("L1H1", "logits", 3.0),  # a path
            ("input", "L0H1.q", 9.0),  # L0H1 feeds nothing: dangling
            ("L0H0", "M1", 2.0),  # M1 reaches nothing in the selection
        ],
    )
    c = find_circuit(g, s, top_k=5)
    kept = {(g.up_names[u], g.down_names[v]) for u, v in c.edges.nonzero().tolist()}
    assert kept == {("input", "L0H0.q"), ("L0H0", "L1H1.q"), ("L1H1", "logits")}
    assert c.heads == ["L0H0", "L1H1"]


def test_a_shared_key_input_counts_only_live_heads_of_its_group():
    g = Graph(2, 2, 1)  # heads 0 and 1 of a layer share KV0
    s = _scores(g, [("input", "L1KV0.k", 5.0), ("L1H0", "logits", 4.0)])
    c = find_circuit(g, s, top_k=2)
    assert c.heads == ["L1H0"]  # L1H1 also reads KV0 but feeds nothing


def test_select_edges_by_top_k_or_threshold():
    g = Graph(1, 2, 1)
    s = torch.randn(g.n_up, g.n_down)
    top = select_edges(g, s, top_k=3)
    assert int(top.sum()) == 3 and not (top & ~g.valid).any()
    thr = select_edges(g, s, threshold=float(s[g.valid].abs().median()))
    assert (s[thr].abs() >= s[g.valid].abs().median()).all()
    with pytest.raises(ValueError, match="exactly one of top_k or threshold"):
        select_edges(g, s)


def test_pruning_an_empty_selection_gives_an_empty_circuit():
    g = Graph(2, 2, 2)
    c = prune_to_paths(g, torch.zeros(g.n_up, g.n_down, dtype=torch.bool))
    assert c.heads == [] and not c.edges.any() and not c.nodes.any()


def test_batched_circuits_and_bootstrap_stability_match_one_at_a_time():
    g = Graph(n_layers=3, n_heads=4, n_kv_heads=2)
    gen = torch.Generator().manual_seed(0)
    per_pair = torch.randn(12, g.n_up, g.n_down, generator=gen, dtype=torch.float64) * g.valid
    # Batched selection and pruning over several score tensors equals doing each alone.
    batch = per_pair[:5]
    kept, nodes = _prune(g, select_edges(g, batch, top_k=15))
    for i in range(5):
        one = find_circuit(g, batch[i], top_k=15)
        assert torch.equal(kept[i], one.edges) and torch.equal(nodes[i], one.nodes)
    # Stability = share of resamples (drawn as head_stability draws them) whose circuit has the head.
    stab = head_stability(g, per_pair, top_k=15, n_boot=20, seed=3)
    idx = torch.randint(12, (20, 12), generator=torch.Generator().manual_seed(3))
    expected = torch.stack(
        [find_circuit(g, per_pair[i].mean(0), top_k=15).nodes.double() for i in idx]
    ).mean(0)[g.head_index]
    torch.testing.assert_close(stab, expected.to(stab.dtype))
    assert 0 < float(stab.mean()) < 1  # some heads in some resamples only: the check can fail
