"""EAP / EAP-IG on the live model, checked against autograd, completeness and exact patching."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr

from sparks.circuits.adapters import UnsupportedModelError, adapter_for
from sparks.circuits.attribution import _run, attribute, graph_of
from sparks.circuits.faithfulness import faithfulness, patched_metric
from sparks.circuits.graph import find_circuit
from sparks.circuits.metrics import NonFiniteError, metric_spec


def _directional_derivative(model, batch, u: int, v: int, metric: str = "logit_diff") -> float:
    """d/dt of the mean metric when edge u->v carries a_u^clean + t (a_u^corr - a_u^clean), at t=0,
    by autograd through the split (patching) forward: independent of the attribution code path."""
    from sparks.circuits.intervene import EdgePatch

    adapter = adapter_for(model)
    graph = graph_of(adapter)
    fn = metric_spec(metric).fn
    pos = batch.last[:, None]
    with torch.no_grad():  # separate clean and corrupted runs, as attribution no longer does
        e_clean = adapter.embed(batch.clean_ids)
        clean_out, _ = _run(adapter, graph, e_clean, batch.mask, pos)
        e_corr = adapter.embed(batch.corrupt_ids)
        _, ups_corr = _run(adapter, graph, e_corr, batch.mask, pos)
    missing = torch.zeros(graph.n_up, graph.n_down, dtype=torch.bool)
    missing[u, v] = True
    t = torch.zeros((), dtype=ups_corr.dtype, requires_grad=True)
    out, _ = _run(adapter, graph, e_clean, batch.mask, pos, EdgePatch(graph, ups_corr, missing, t))
    (d,) = torch.autograd.grad(fn(out, batch, clean_out.log_softmax(-1)).mean(), t)
    return float(d)


@pytest.mark.parametrize(
    "name, family",
    [("qwen64", "qwen2"), ("llama64", "llama"), ("qwen3_64", "qwen3"), ("mistral64", "mistral")],
)
def test_one_step_scores_equal_autograd_directional_derivatives(request, name, family, batches):
    model = request.getfixturevalue(name)
    assert adapter_for(model).family == family
    attr = attribute(model, batches[:1], steps=1, schedule="right", metric="logit_diff")
    g = attr.graph
    valid = g.valid.nonzero().tolist()
    sample = [
        valid[i]
        for i in torch.randperm(len(valid), generator=torch.Generator().manual_seed(0))[
            :12
        ].tolist()
    ]
    sample.append([0, g.n_down - 1])  # input -> logits
    for u, v in sample:
        expected = _directional_derivative(model, batches[0], u, v)
        # Hugging Face's RMSNorm computes in float32 even in a float64 model: float32 rounding.
        assert attr.scores[u, v].item() == pytest.approx(expected, rel=1e-5, abs=1e-9), (
            g.up_names[u],
            g.down_names[v],
        )


@pytest.mark.parametrize("name", ["qwen64", "llama64"])
def test_completeness_input_edges_sum_to_the_metric_change(request, name, batches):
    model = request.getfixturevalue(name)
    errors = []
    for steps in (2, 10, 50):
        attr = attribute(model, batches, steps=steps, schedule="right", metric="logit_diff")
        total = attr.scores[0].sum()  # every edge leaving the input node
        change = (attr.m_corrupt - attr.m_clean).mean()  # scores measure clean -> corrupted
        errors.append(float((total - change).abs() / change.abs()))
    assert errors[-1] < 0.01, errors
    assert errors[0] > errors[1] > errors[2], errors


def test_eap_ig_ranks_edges_like_exact_single_edge_patching(qwen64, batches):
    attr = attribute(qwen64, batches, steps=5, schedule="right", metric="logit_diff")
    g = attr.graph
    mag = attr.scores.abs().masked_fill(~g.valid, -1).flatten()
    top = mag.topk(50).indices
    masks = []
    for i in top.tolist():
        m = torch.zeros(g.n_up * g.n_down, dtype=torch.bool)
        m[i] = True
        masks.append(m.view(g.n_up, g.n_down))
    patched, m_clean, _ = patched_metric(qwen64, batches, masks, metric="logit_diff")
    exact = (patched - m_clean).mean(1)  # exact effect of corrupting that one edge
    rho = spearmanr(attr.scores.flatten()[top].numpy(), exact.numpy()).statistic
    assert rho >= 0.8, rho


def test_patching_nothing_or_everything_reproduces_clean_and_corrupted(qwen64, batches):
    g = graph_of(adapter_for(qwen64))
    patched, m_clean, m_corr = patched_metric(
        qwen64, batches[:1], [g.valid & False, g.valid], metric="logit_diff"
    )
    torch.testing.assert_close(patched[0], m_clean)
    torch.testing.assert_close(patched[1], m_corr)
    # (the norms inside compute in float32, hence 1e-6)
    assert faithfulness(
        qwen64, batches[:1], [g.valid.clone(), g.valid & False], metric="logit_diff"
    ) == pytest.approx([1.0, 0.0], abs=1e-6)


def test_patched_runs_side_by_side_match_one_at_a_time(qwen64, batches):
    """Several masks in one forward pass (block 0 the corrupted run) give what separate passes give."""
    g = graph_of(adapter_for(qwen64))
    gen = torch.Generator().manual_seed(1)
    masks = [g.valid & (torch.rand(g.valid.shape, generator=gen) < p) for p in (0.1, 0.5, 0.9)]
    together = patched_metric(qwen64, batches[:1], masks, metric="logit_diff")
    one_by_one = patched_metric(qwen64, batches[:1], masks, tokens_per_pass=1, metric="logit_diff")
    for a, b in zip(together, one_by_one, strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(together[0][0], together[0][2])  # the masks do differ in effect


@pytest.mark.parametrize("metric", ["logit_diff", "logprob", "kl"])
def test_faithfulness_reusing_attributions_runs_matches_running_them_again(qwen64, batches, metric):
    """The clean/corrupted runs kept by `attribute` stand in for fresh ones exactly."""
    attr = attribute(qwen64, batches, steps=2, schedule="right", metric=metric, keep_reference=3)
    g = attr.graph
    r = attr.reference
    assert r.ups_corr.shape[0] == 3 and torch.equal(r.batch.clean_ids, batches[0].clean_ids[:3])
    circuits = [find_circuit(g, attr.scores, top_k=k).edges for k in (10, 40, 120)]
    fresh = faithfulness(qwen64, [batches[0].head(3)], circuits, metric=metric)
    reused = faithfulness(qwen64, [], circuits, metric=metric, reference=r, tokens_per_pass=1)
    assert reused == pytest.approx(fresh, rel=1e-6, abs=1e-9)
    assert len(set(round(f, 6) for f in fresh)) > 1  # the circuits differ in effect


@pytest.mark.parametrize("metric", ["logprob", "kl"])
def test_other_metrics_are_complete_too(qwen64, batches, metric):
    attr = attribute(qwen64, batches[:1], steps=50, schedule="right", metric=metric)
    change = (attr.m_corrupt - attr.m_clean).mean()
    assert float((attr.scores[0].sum() - change).abs()) <= 0.02 * float(change.abs()) + 1e-9


def test_attribution_leaves_no_hooks_and_no_parameter_gradients(qwen64, batches):
    attribute(qwen64, batches[:1], steps=2, schedule="right", metric="logit_diff")
    assert all(p.grad is None for p in qwen64.parameters())
    for m in qwen64.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_hooks_are_removed_on_error(qwen64, batches):
    from sparks.circuits.intervene import graph_hooks

    adapter = adapter_for(qwen64)
    e = adapter.embed(batches[0].clean_ids)
    with pytest.raises(RuntimeError, match="boom"), graph_hooks(adapter, graph_of(adapter), e):
        raise RuntimeError("boom")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in qwen64.modules())


def test_unsupported_architecture_names_the_supported_ones():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=64, vocab_size=50))
    with pytest.raises(UnsupportedModelError, match="'gpt2'.*qwen2, qwen3, llama, mistral"):
        adapter_for(gpt2)


def test_unknown_metric_and_bad_steps_are_refused(qwen64, batches):
    with pytest.raises(ValueError, match="unknown metric 'acc'"):
        attribute(qwen64, batches[:1], steps=1, schedule="right", metric="acc")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        attribute(qwen64, batches[:1], steps=0, schedule="right", metric="logit_diff")


def test_pairs_and_steps_in_micro_batches_give_the_same_scores(qwen64, batches):
    """However the passes are cut (one pair and one IG step per pass, or all at once), the
    scores, metrics and kept reference are the same."""
    whole = attribute(
        qwen64,
        batches[:1],
        steps=3,
        keep_reference=2,
        tokens_per_pass=10**6,
        schedule="right",
        metric="logit_diff",
    )
    width = batches[0].width
    tiny = attribute(
        qwen64,
        batches[:1],
        steps=3,
        keep_reference=2,
        tokens_per_pass=width,
        schedule="right",
        metric="logit_diff",
    )
    torch.testing.assert_close(tiny.per_pair, whole.per_pair)
    torch.testing.assert_close(tiny.m_clean, whole.m_clean)
    # the reference is the first pairs of the first batch, however the passes were cut
    assert tiny.reference.batch.clean_ids.shape[0] == 2
    torch.testing.assert_close(tiny.reference.ups_corr, whole.reference.ups_corr)


def _mixed_lengths(world, tokenizer):
    """The world's pairs of every template (their lengths differ 2x) in one batch."""
    from sparks.circuits.batches import encode_pairs

    pairs = world.pairs()
    return encode_pairs(tokenizer, pairs[:12], batch_size=12)


@pytest.mark.parametrize("name", ["qwen64", "llama64", "qwen3_64", "mistral64"])
def test_the_shared_prefix_and_length_groups_give_the_scores_of_full_passes(
    request, name, world, tokenizer
):
    """Running the pairs' shared prefix once, and pairs of similar length together, changes no
    number: per-pair scores, metrics and faithfulness equal those of every position in one
    padded batch, pair by pair (float64; HF's norms round in float32)."""
    from sparks.circuits.attribution import length_groups, prefix_length
    from sparks.circuits.metrics import positions

    model = request.getfixturevalue(name)
    (b,) = _mixed_lengths(world, tokenizer)
    pos = positions(b, "logit_diff")
    assert prefix_length(b, pos) > 10  # the system prompt and chat template
    assert len(length_groups(b, pos)) >= 2  # the long templates run apart from the short ones
    kw = dict(steps=3, metric="logit_diff", keep_reference=4)
    fast = attribute(model, [b], **kw)
    plain = attribute(model, [b], compact=False, **kw)
    torch.testing.assert_close(fast.per_pair, plain.per_pair, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(fast.m_clean, plain.m_clean, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fast.m_corrupt, plain.m_corrupt, rtol=1e-6, atol=1e-8)
    assert fast.reference.ups_corr.shape[1] == b.trimmed().width - fast.reference.prefix.length
    circuits = [find_circuit(fast.graph, fast.scores, top_k=k).edges for k in (10, 40)]
    got = faithfulness(model, [], circuits, metric="logit_diff", reference=fast.reference)
    want = faithfulness(model, [b.head(4)], circuits, metric="logit_diff")
    assert got == pytest.approx(want, rel=1e-6)


def test_length_groups_cover_every_pair_once_and_split_only_where_padding_costs_more():
    from sparks.circuits.attribution import PASS_TOKENS, length_groups
    from sparks.circuits.batches import PairBatch

    def batch(lengths, first_diff=5):
        B, W = len(lengths), max(lengths)
        ids = torch.ones(B, W, dtype=torch.long)
        mask = torch.zeros(B, W, dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
        corrupt = ids.clone()
        corrupt[:, first_diff] = 2
        last = mask.sum(1) - 1
        none = torch.zeros(B, dtype=torch.long)
        return PairBatch(ids, corrupt, mask, last, none, none, last[:, None], torch.ones(B, 1))

    mixed = batch([20, 200, 21, 199, 22, 20])
    groups = length_groups(mixed, mixed.last[:, None])
    assert sorted(torch.cat(groups).tolist()) == list(range(6))
    assert [sorted(g.tolist()) for g in groups] == [[0, 2, 4, 5], [1, 3]]
    even = batch([30] * 6)
    assert len(length_groups(even, even.last[:, None])) == 1
    # two lengths a few tokens apart: a pass costs more than the padding it would save
    close = batch([30, 30, 31, 31])
    assert 2 * 1 < PASS_TOKENS and len(length_groups(close, close.last[:, None])) == 1


def test_left_schedule_is_the_reference_implementations_riemann_sum(qwen64, batches):
    """left (k = 0..m-1, as hannamw/EAP-IG) and right (k = 1..m) differ by exactly the end
    points: m * left(m) = m * right(m) - right(1) + left(1), where right(1) is plain EAP at the
    clean input and left(1) plain EAP at the corrupted one."""
    m = 4
    right = attribute(qwen64, batches[:1], steps=m, schedule="right", metric="logit_diff").per_pair
    left = attribute(qwen64, batches[:1], steps=m, schedule="left", metric="logit_diff").per_pair
    at_clean = attribute(
        qwen64, batches[:1], steps=1, schedule="right", metric="logit_diff"
    ).per_pair
    at_corrupt = attribute(
        qwen64, batches[:1], steps=1, schedule="left", metric="logit_diff"
    ).per_pair
    torch.testing.assert_close(m * left, m * right - at_clean + at_corrupt)
    assert not torch.allclose(left, right)
    with pytest.raises(ValueError, match="unknown IG schedule 'middle'"):
        attribute(qwen64, batches[:1], schedule="middle", steps=1, metric="logit_diff")


def test_kl_prefix_reads_every_answer_prefix_position_and_is_complete(qwen64, world, tokenizer):
    """On pairs with an answer-prefix span, kl_prefix averages the KL over the span; with one
    position it is the last-position KL; at 50 steps the input edges sum to the metric change."""
    from sparks.circuits.batches import encode_pairs

    pairs = []
    for p in world.pairs()[:3]:
        c = tokenizer(p["clean"], add_special_tokens=False)["input_ids"]
        x = tokenizer(p["corrupted"], add_special_tokens=False)["input_ids"]
        pairs.append({"clean_ids": c, "corrupted_ids": x, "span_start": len(c) - 6})
    (span_batch,) = encode_pairs(tokenizer, pairs, batch_size=3)
    assert span_batch.span.shape[1] == 6 and not span_batch.has_answers
    attr = attribute(qwen64, [span_batch], steps=50, schedule="right", metric="kl_prefix")
    change = (attr.m_corrupt - attr.m_clean).mean()
    assert float((attr.scores[0].sum() - change).abs()) <= 0.02 * float(change.abs())
    last = attribute(qwen64, [span_batch], steps=1, schedule="right", metric="kl")
    prefix = attribute(qwen64, [span_batch], steps=1, schedule="right", metric="kl_prefix")
    assert not torch.allclose(last.m_corrupt, prefix.m_corrupt)
    with pytest.raises(ValueError, match="no answers.*use metric kl or kl_prefix"):
        attribute(qwen64, [span_batch], steps=1, schedule="right", metric="logit_diff")


def test_a_diverged_model_is_reported_not_scored(world, batches):
    """NaN weights give a NonFiniteError naming the pass, never NaN scores."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(world.model_dir)).eval()
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="clean run.*not finite"):
        attribute(model, batches[:1], steps=2, schedule="right", metric="logit_diff")


@pytest.mark.parametrize("schedule", ["right", "left", "midpoint", "gauss"])
def test_each_ig_rule_integrates_polynomials_as_its_order_says(schedule):
    """Quadrature on [0, 1]: weights sum to 1, points in run order (clean side first), and the
    integral of x^d is exact up to the rule's degree (Riemann 0, midpoint 1, Gauss-Legendre 2m-1),
    and not beyond it; exp(x), whose integral is e - 1, converges at the rule's order."""
    import math

    from sparks.circuits.quadrature import ig_points

    exact = {"right": lambda m: 0, "left": lambda m: 0, "midpoint": lambda m: 1}
    errors = []
    for m in (1, 2, 3, 5, 8, 16):
        a, w = ig_points(m, schedule)
        assert len(a) == len(w) == m and abs(float(w.sum()) - 1) < 1e-12
        assert bool((a[:-1] > a[1:]).all()) and 0 <= float(a.min()) and float(a.max()) <= 1
        degree = exact.get(schedule, lambda m: 2 * m - 1)(m)
        for d in range(degree + 1):
            assert abs(float((w * a**d).sum()) - 1 / (d + 1)) < 1e-12, (m, d)
        d = degree + 1
        if m <= 5:  # beyond: inexact (Gauss's error at high m falls below rounding)
            assert abs(float((w * a**d).sum()) - 1 / (d + 1)) > 1e-13, "exact beyond its degree?"
        errors.append(abs(float((w * a.exp()).sum()) - (math.e - 1)))
    order = {"right": 1, "left": 1, "midpoint": 2, "gauss": 4}[schedule]
    # from m = 8 to 16 the error falls by at least 2^order (Gauss: to rounding level)
    assert errors[-1] <= max(errors[-2] / 2**order * 1.1, 1e-14)


def test_rules_agree_where_they_coincide_and_converge_together(qwen64, batches):
    """Through the whole attribution: Gauss-Legendre and midpoint share their 1-point rule
    (alpha 1/2, weight 1), so their scores are identical; at 5 steps Gauss and midpoint are
    closer to a 32-step midpoint reference than the right Riemann sum at 5 steps."""
    b = batches[:1]
    g1 = attribute(qwen64, b, steps=1, schedule="gauss", metric="logit_diff").per_pair
    m1 = attribute(qwen64, b, steps=1, schedule="midpoint", metric="logit_diff").per_pair
    assert torch.allclose(g1, m1, rtol=1e-6, atol=1e-9)
    ref = attribute(qwen64, b, steps=32, schedule="midpoint", metric="logit_diff").scores
    err = {
        s: float(
            (attribute(qwen64, b, steps=5, schedule=s, metric="logit_diff").scores - ref).norm()
        )
        for s in ("right", "midpoint", "gauss")
    }
    assert err["gauss"] < err["right"] and err["midpoint"] < err["right"], err


@pytest.mark.parametrize("schedule", ["right", "midpoint", "gauss"])
def test_auto_steps_reuse_what_they_ran_and_stop_on_completeness(qwen64, batches, schedule):
    """`steps: auto`: nested rules run each point once and end with exactly the scores of a direct
    attribution at the chosen count; every rule stops once completeness is within the tolerance
    and the top-k edges held still, or at the cap, flagged."""
    from sparks.circuits.spec import SnapshotSpec
    from sparks.circuits.steps import attribute_auto

    b = batches[:1]
    attr, choice = attribute_auto(
        qwen64, b, SnapshotSpec(schedule=schedule, top_k=30, steps_tolerance=0.05)
    )
    # each pair's scores are exactly a direct attribution's at the count it ended at
    for steps in set(choice.pair_steps):
        direct = attribute(qwen64, b, steps=steps, schedule=schedule, metric="logit_diff")
        rows = torch.tensor(choice.pair_steps) == steps
        torch.testing.assert_close(attr.per_pair[rows], direct.per_pair[rows], rtol=1e-5, atol=1e-8)
    assert choice.tried[-1] == choice.steps == max(choice.pair_steps) and len(choice.tried) >= 2
    assert sum(choice.pairs_at.values()) == len(b[0].last)
    if schedule in ("right", "midpoint"):  # nested: each point once
        assert choice.passes == sum(choice.pair_steps)
    assert choice.capped or choice.completeness_error <= 0.05
    assert choice.completeness_error == pytest.approx(attr.completeness_error, rel=1e-9)
    _, capped = attribute_auto(
        qwen64, b, SnapshotSpec(schedule=schedule, top_k=30, steps_tolerance=1e-9, max_steps=8)
    )
    assert capped.capped and capped.steps <= 8


def test_pairs_settle_smallest_residual_first_within_the_tolerance():
    """`steps: auto` settles the pairs whose residuals, smallest first and with those settled
    before, fit the tolerance; the rest run the next count."""
    from sparks.circuits.steps import unsettled

    residual = torch.tensor([0.1, 0.5, 0.05, 0.3])
    everyone = torch.ones(4, dtype=torch.bool)
    assert unsettled(residual, everyone, 0.2).tolist() == [False, True, False, True]
    assert unsettled(residual, everyone, 1.0).tolist() == [False] * 4
    assert unsettled(residual, everyone, 0.01).tolist() == [True] * 4
    # pair 0 settled at an earlier count: its residual uses the budget first
    later = torch.tensor([False, True, True, True])
    assert unsettled(residual, later, 0.2).tolist() == [False, True, False, True]
    assert unsettled(residual, later, 0.12).tolist() == [False, True, True, True]
