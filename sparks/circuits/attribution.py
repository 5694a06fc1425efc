"""EAP and EAP-IG edge attribution on a live Hugging Face decoder, plus circuit faithfulness.

For each batch of clean/corrupted prompt pairs:

1. Two forward passes (no grad) capture every upstream node's output on the clean and on the
   corrupted input: a^clean, a^corr [B, P, n_up, D].
2. m forward+backward passes at input embeddings e_k = e_corr + (k/m)(e_clean - e_corr), k = 1..m
   (EAP-IG over the inputs; m = 1 is plain EAP at the clean input) give the metric's gradient with
   respect to every downstream input separately; they are averaged: G [B, P, n_down, D].
3. score(u -> v) = sum over positions of (a_u^corr - a_u^clean) . G_v: the first-order change of the
   metric when edge u -> v carries the corrupted activation. Scores are kept per pair and averaged.

Shared prefix: the positions before the first token where a micro-batch's clean and corrupted
prompts differ (a system prompt, a chat template, "Compute ") hold the same activations on the clean,
the corrupted and every interpolated input (the model is causal), so a_u^corr - a_u^clean is zero
there and they add nothing to any score. They run once, without gradients, and every pass above
runs only the rest of the prompt on their keys and values (`SharedPrefix`): the same scores, exactly
(up to float rounding), for the tokens after the first difference only. Pairs of similar length
run together (`length_groups`), so a 52-token pair is not padded to a 108-token one. Together they
cut the tokens each pass runs by 53 % (the demo's own pairs), 60 % (its hard numbers pairs) and
68 % (its easy ones); tested equal to full padded passes on four model families.

Every downstream input reads norm(x) through a linear map W_v (a head's slice of q/k/v_proj; the
identity for the MLP and the logits). With W'_v = W_v diag(w_norm), r = rms(x)^-1 and g_v the
gradient at the map's output, G_v = r W'_v^T g_v - x r^3 (g_v . W'_v x) / D. The first term is
linear in g: its sum over the m steps is kept in head space [B,P,heads,d] and mapped to the residual
once per batch. The second factors into per-position scalars (delta_a_u . x)(r^3 g_v . W'_v x / D),
contracted directly into scores. So no per-step tensor is larger than the projections' outputs.

Sign: scores measure clean -> corrupted, so the input node's edges sum to about m_corr - m_clean
(completeness), and edges that carry the clean answer have negative logit-difference scores.
The circuit uses |score|. Gradients come from torch.autograd.grad at activations only: parameters'
.grad are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sparks.circuits.adapters import DecoderAdapter, adapter_for
from sparks.circuits.batches import PairBatch
from sparks.circuits.budget import plan_passes
from sparks.circuits.graph import Graph
from sparks.circuits.intervene import GradientProbe, graph_hooks, norm_eps
from sparks.circuits.metrics import NonFiniteError, check_metric_fits, metric_spec, positions
from sparks.circuits.quadrature import ig_points
from sparks.circuits.spec import DEFAULT_SCHEDULE


@dataclass(frozen=True)
class SharedPrefix:
    """The first `length` positions of a micro-batch, equal in its clean and corrupted prompts,
    run once: their keys and values per layer ([B, kv_heads, length, head_dim]), which the passes
    over the rest of the prompt attend to instead of running them again."""

    length: int
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    config: Any = None  # the model's config: its layer types (sliding windows) for the cache

    def cache(self, n: int):
        """A fresh cache holding the prefix for `n` row blocks (a pass appends to its cache)."""
        from transformers import DynamicCache

        data = [(k.repeat(n, 1, 1, 1), v.repeat(n, 1, 1, 1)) for k, v in self.kv]
        return DynamicCache(ddp_cache_data=data, config=self.config)

    def head(self, n: int) -> SharedPrefix:
        """The prefix of the first `n` rows."""
        return SharedPrefix(self.length, tuple((k[:n], v[:n]) for k, v in self.kv), self.config)


def _equal_starts(b: PairBatch, pos: torch.Tensor) -> torch.Tensor:
    """[B]: how many leading positions each pair of `b` has equal in its clean and corrupted
    prompt, short of its first readout position (the metric reads after them)."""
    differ = (b.clean_ids != b.corrupt_ids) & b.mask.bool()
    first = torch.where(differ.any(1), differ.int().argmax(1), b.last + 1)
    return torch.minimum(first, pos.min(1).values)


def prefix_length(b: PairBatch, pos: torch.Tensor) -> int:
    """How many leading positions every pair of `b` has equal in its clean and corrupted prompt,
    short of its first readout position (the metric reads after the prefix)."""
    return int(_equal_starts(b, pos).min())


def shared_prefix(adapter: DecoderAdapter, b: PairBatch, pos: torch.Tensor) -> SharedPrefix | None:
    """The positions of `b` before the first clean/corrupted difference of any of its pairs (and
    before its first readout position), run once; None when there are none."""
    length = prefix_length(b, pos)
    window = getattr(adapter.decoder.config, "sliding_window", None)
    if length < 1 or (window and b.width > window):
        return None  # a prompt beyond a sliding window runs whole: no cache to trust there
    with torch.no_grad():
        out = adapter.decoder(
            inputs_embeds=adapter.embed(b.clean_ids[:, :length]),
            attention_mask=b.mask[:, :length],
            use_cache=True,
        )
    kv = tuple((k, v) for k, v, *_ in out.past_key_values)
    return SharedPrefix(length, kv, adapter.decoder.config)


@dataclass(frozen=True)
class PatchReference:
    """What patched runs on `batch` need from its clean and corrupted runs, kept by attribution
    (which makes both runs anyway) so faithfulness need not run them again."""

    batch: PairBatch
    # [B, P', n_up, D]: upstream outputs on the corrupted input, after the prefix
    ups_corr: torch.Tensor
    ref: torch.Tensor  # [B, T, V] log-probabilities at the readout positions on the clean input
    m_clean: torch.Tensor  # [B]
    m_corrupt: torch.Tensor  # [B]
    prefix: SharedPrefix | None = None  # the batch's shared prefix (P' = P - its length)


@dataclass(frozen=True)
class Attribution:
    """Edge scores of one attribution run; `scores` is the mean of `per_pair` over pairs."""

    graph: Graph
    per_pair: torch.Tensor  # [N, n_up, n_down], zero on invalid edges
    m_clean: torch.Tensor  # [N]
    m_corrupt: torch.Tensor  # [N]
    steps: int
    metric: str
    reference: PatchReference | None = None  # the first micro-batch's first rows, when asked for
    schedule: str = DEFAULT_SCHEDULE

    @property
    def scores(self) -> torch.Tensor:
        return self.per_pair.mean(0)

    @property
    def node_scores(self) -> torch.Tensor:
        """[n_up]: first-order change of the metric when the node's whole output is corrupted."""
        return self.scores.sum(1)

    @property
    def completeness_error(self) -> float:
        return completeness_gap(
            float(self.node_scores[0]), float(self.m_clean.mean()), float(self.m_corrupt.mean())
        )


def completeness_gap(input_score: float, m_clean: float, m_corrupt: float) -> float:
    """|sum of the input node's edge scores - (m_corrupt - m_clean)| / |m_corrupt - m_clean|:
    how far the first-order (IG) scores are from the real metric change. NaN when the metric
    does not move."""
    change = m_corrupt - m_clean
    if abs(change) < 1e-12:
        return float("nan")
    return abs(input_score - change) / abs(change)


def graph_of(adapter: DecoderAdapter) -> Graph:
    return Graph(adapter.n_layers, adapter.n_heads, adapter.n_kv_heads)


def readout(
    adapter: DecoderAdapter, embeds, mask, pos: torch.Tensor, prefix: SharedPrefix | None = None
) -> torch.Tensor:
    """Logits [B, T, V] at positions `pos` [B, T] only (at least float32): the LM head never
    runs over every position, which for a 150k vocabulary would be the largest tensor of a pass.
    With a `prefix`, `embeds` are the positions after it (for B / its rows row blocks), `mask`
    covers the whole prompt and `pos` counts from the prompt's start."""
    past = None
    if prefix is not None:
        past = prefix.cache(len(embeds) // len(prefix.kv[0][0]))
        pos = pos - prefix.length
    hidden = adapter.decoder(
        inputs_embeds=embeds, attention_mask=mask, past_key_values=past, use_cache=False
    )
    h = hidden.last_hidden_state[torch.arange(len(pos), device=pos.device)[:, None], pos]
    logits = adapter.lm_head(h)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _run(adapter, graph, embeds, mask, pos, deltas=None, *, capture=True, prefix=None):
    with graph_hooks(adapter, graph, embeds, deltas, capture=capture) as ups:
        out = readout(adapter, embeds, mask, pos, prefix)
    return out, ups  # [B, T, V], [B, P, n_up, D] or None


def _finite(x: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise NonFiniteError(
            f"{what} is not finite (NaN or inf): the model diverged or overflowed its dtype"
        )
    return x


def attribute(
    model,
    batches: Sequence[PairBatch],
    *,
    steps: int,
    metric: str,
    schedule: str = DEFAULT_SCHEDULE,
    tokens_per_pass: int | None = None,
    progress: bool = False,
    keep_reference: int = 0,
    points: tuple[torch.Tensor, torch.Tensor] | None = None,
    compact: bool = True,
) -> Attribution:
    """EAP-IG edge scores of `model` over `batches` of clean/corrupted pairs (steps=1: plain EAP).

    Pairs and IG steps share forward/backward passes as far as memory allows: `tokens_per_pass`
    bounds the tokens of one pass (None: sized from the device's free memory, see `budget`);
    the numbers do not depend on it. `keep_reference=K` keeps the clean/corrupted runs of the
    first micro-batch's first K pairs (`Attribution.reference`) for `faithfulness` to reuse.
    `compact=False` runs every position of every pair, padded to its batch's longest, in every
    pass: no shared prefix, no length groups (the reference they are tested against).
    Raises NonFiniteError naming the pass where the metric or a gradient is NaN/inf."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    spec = metric_spec(metric)
    check_metric_fits(metric, batches)
    # `points`: run only these (alpha, weight) pairs of the `steps`-point rule (steps: auto reuses
    # the points it already ran and adds the new ones)
    alphas, weights = points if points is not None else ig_points(steps, schedule)
    adapter = adapter_for(model)
    graph = graph_of(adapter)
    dtype = next(model.parameters()).dtype
    valid = graph.valid.to(next(model.parameters()).device)
    micro, offset = [], 0
    for bi, b in enumerate(batches):
        pos = positions(b, metric)
        groups = length_groups(b, pos) if compact else [torch.arange(len(b.last))]
        for rows in groups:
            g = b.take(rows).trimmed() if compact else b
            start = prefix_length(g, positions(g, metric)) if compact else 0
            plan = plan_passes(
                adapter,
                width=g.width - start,
                pairs=len(rows),
                steps=len(alphas),
                dtype=dtype,
                positions=pos.shape[1],
                tokens_per_pass=tokens_per_pass,
            )
            for s in range(0, len(rows), plan.pairs):
                part = g.rows(s, s + plan.pairs).trimmed()
                micro.append((bi, offset + rows[s : s + plan.pairs], part, plan.steps))
        offset += len(b.last)
    order, per_pair, m_clean, m_corr = [], [], [], []
    for bi, rows, b, per_pass in _progress(micro, progress, "attribution"):
        order.append(rows)
        B = len(b.last)
        pos = positions(b, metric)
        prefix = shared_prefix(adapter, b, pos) if compact else None
        start = prefix.length if prefix is not None else 0
        with torch.no_grad():
            e_clean = adapter.embed(b.clean_ids[:, start:])
            e_corr = adapter.embed(b.corrupt_ids[:, start:])
        acc = ref = None
        # The first pass leads with alpha = 1, the clean input itself (e_clean - 0 * diff is
        # e_clean exactly), so it doubles as the clean run; in rules without that point the row
        # block only gives the clean run (weight 0 in the metric's sum). Each point's gradient is
        # weighted by its quadrature weight through the metric's sum.
        chunks, chunk_w = list(alphas.split(per_pass)), list(weights.split(per_pass))
        if alphas[0] != 1:
            chunks[0] = torch.cat([alphas.new_ones(1), chunks[0]])
            chunk_w[0] = torch.cat([weights.new_zeros(1), chunk_w[0]])
        for a, w in zip(chunks, chunk_w, strict=True):
            n = len(a)
            # float32 at least: a bf16 weight would round the quadrature weights
            weight = w.to(e_clean.device, torch.promote_types(e_clean.dtype, torch.float32))
            one_minus = (1 - a).to(e_clean.device, e_clean.dtype)[:, None, None, None]
            e = (e_clean - one_minus * (e_clean - e_corr)).flatten(0, 1)  # [n*B, P, D]
            bb = b.repeat(n)
            pos_n = pos.repeat(n, 1)
            probe = GradientProbe(adapter, keep_rows=B if acc is None else 0)
            with probe.hooks():
                out = readout(adapter, e, bb.mask, pos_n, prefix)
            where = f"batch {bi + 1}, IG alphas {[round(float(x), 3) for x in a]}"
            if acc is None:
                clean_out = out[:B].detach()
                ref = clean_out.log_softmax(-1)
                m_clean.append(
                    _finite(spec.fn(clean_out, b, ref), f"the metric on the clean run ({where})")
                )
                with torch.no_grad():
                    corr_out, ups_corr = _run(adapter, graph, e_corr, b.mask, pos, prefix=prefix)
                m_corr.append(
                    _finite(
                        spec.fn(corr_out, b, ref),
                        f"the metric on the corrupted run (batch {bi + 1})",
                    )
                )
                delta = ups_corr.sub_(probe.ups)  # in place: one [B, P, n_up, D] buffer, not three
                del ups_corr
                probe.ups = None
                acc = _EapIgSums(adapter, graph, delta)
            assert ref is not None and acc is not None  # set by the batch's first pass
            vals = spec.fn(out, bb, ref.repeat(n, 1, 1)).view(n, B)
            m = _finite((vals * weight[:, None]).sum(), f"the metric ({where})")
            grads = probe.output_grads(m)
            for key, g in grads.items():
                _finite(g, f"the gradient at {'.'.join(map(str, key))} ({where})")
            acc.add(probe.resid, grads, n)
            del probe, grads, out
        assert acc is not None
        s = acc.scores()  # the weights sum to 1: the integral's mean
        per_pair.append(_finite(s * valid, f"the edge scores (batch {bi + 1})").detach())
    if not per_pair:
        raise ValueError("no prompt pairs to attribute: the pairs file or dataset is empty")
    # micro-batches ran grouped by length: back to the pairs' order
    back = torch.cat(order).argsort()
    reference = None
    if keep_reference:
        first = batches[0].head(min(keep_reference, len(batches[0].last)))
        reference = patch_reference(adapter, graph, first, metric, compact=compact)
    return Attribution(
        graph,
        torch.cat(per_pair).cpu()[back],
        torch.cat(m_clean).cpu()[back],
        torch.cat(m_corr).cpu()[back],
        steps,
        metric,
        reference,
        schedule,
    )


def patch_reference(
    adapter: DecoderAdapter, graph: Graph, b: PairBatch, metric: str, *, compact: bool = True
) -> PatchReference:
    """The clean and corrupted runs of `b` that patched runs (faithfulness) start from: two
    forward passes without gradients, on the positions after the pairs' shared prefix."""
    spec = metric_spec(metric)
    b = b.trimmed() if compact else b
    pos = positions(b, metric)
    prefix = shared_prefix(adapter, b, pos) if compact else None
    start = prefix.length if prefix is not None else 0
    with torch.no_grad():
        clean_out, _ = _run(
            adapter, graph, adapter.embed(b.clean_ids[:, start:]), b.mask, pos,
            capture=False, prefix=prefix,
        )  # fmt: skip
        ref = clean_out.log_softmax(-1)
        corr_out, ups_corr = _run(
            adapter, graph, adapter.embed(b.corrupt_ids[:, start:]), b.mask, pos, prefix=prefix
        )
    assert ups_corr is not None  # captured
    m_clean = _finite(spec.fn(clean_out, b, ref), "the metric on the clean run (faithfulness)")
    m_corr = _finite(spec.fn(corr_out, b, ref), "the metric on the corrupted run (faithfulness)")
    return PatchReference(b, ups_corr, ref, m_clean, m_corr, prefix)


# A group's fixed cost in padded tokens (its own passes, hooks, Python): a split must save more.
# A setting, not tuned (the demo's own pairs: 3 groups at 48, 2 at 100-400, 5 at 8).
PASS_TOKENS = 48


def length_groups(b: PairBatch, pos: torch.Tensor) -> list[torch.Tensor]:
    """Row indices of `b` in groups of similar length, each run as its own micro-batch: padding
    every pair to the batch's longest pair cost the demo's pairs 1.5x their real tokens.

    Rows are sorted by their end; contiguous runs are chosen (exact dynamic programme) to
    minimise the padded tokens each group runs (its rows x from its shared prefix to its longest
    end) plus PASS_TOKENS per group."""
    ends = (b.last + 1).tolist()
    starts = _equal_starts(b, pos).tolist()
    idx = sorted(range(len(ends)), key=lambda i: (ends[i], i))
    n = len(idx)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j sorted rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        lo = 10**9
        for i in range(j, 0, -1):  # group = sorted rows i-1 .. j-1
            lo = min(lo, starts[idx[i - 1]])
            cost = best[i - 1] + (j - i + 1) * (ends[idx[j - 1]] - lo) + PASS_TOKENS
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    groups, j = [], n
    while j > 0:
        groups.append(torch.tensor(idx[cut[j] : j]))
        j = cut[j]
    return groups[::-1]


class _EapIgSums:
    """Running sums over IG steps that give one batch's per-pair edge scores (see module doc)."""

    @torch.no_grad()
    def __init__(self, adapter: DecoderAdapter, graph: Graph, delta: torch.Tensor):
        self.adapter, self.graph, self.delta = adapter, graph, delta  # delta: [B, P, n_up, D]
        B, D = delta.shape[0], delta.shape[-1]
        self.D = D
        self.acc = torch.promote_types(delta.dtype, torch.float32)  # sums in at least float32
        self.head_sums: dict[tuple, torch.Tensor] = {}  # sum_k r_k g_k, per consumer group
        self.second = delta.new_zeros(B, graph.n_up, graph.n_down, dtype=self.acc)

    def _w_attn(self, l: int) -> torch.Tensor:
        """W' [C, d, D] of layer l (C = heads + 2 kv heads), made when needed, not kept."""
        m, hd = self.adapter.layers[l], self.adapter.head_dim
        w = torch.cat([x.weight.view(-1, hd, self.D) for x in (m.q, m.k, m.v)])
        return w * m.input_norm.weight

    def _r(self, norm, x):
        dt = torch.promote_types(x.dtype, torch.float32)  # HF's norms compute in at least float32
        return torch.rsqrt(x.to(dt).pow(2).mean(-1, keepdim=True) + norm_eps(norm)).to(x.dtype)

    def _add_group(self, key, x, g, wx, r, n, n_up, cols: slice):
        """x [nB,P,D]; g, wx [nB,P,C,d] (d = D for norm-only consumers); r [nB,P,1]."""
        rs = (r[..., None] * g).to(self.acc).unflatten(0, (n, -1)).sum(0)
        self.head_sums[key] = self.head_sums[key] + rs if key in self.head_sums else rs
        c = (r.pow(3) * (g * wx).sum(-1)).to(self.acc) / self.D  # [nB, P, C]
        ax = torch.einsum("bpud,kbpd->kbpu", self.delta[:, :, :n_up], x.unflatten(0, (n, -1)))
        self.second[:, :n_up, cols] += torch.einsum(
            "kbpu,kbpc->buc", ax.to(self.acc), c.unflatten(0, (n, -1))
        )

    @torch.no_grad()
    def add(self, resid: dict, grads: dict, n: int) -> None:
        """Add one pass over n IG steps (resid and grads as GradientProbe keeps them)."""
        g_, hd = self.graph, self.adapter.head_dim
        for l, m in enumerate(self.adapter.layers):
            x = resid[("attn", l)]
            g = torch.cat([grads[(k, l)].unflatten(-1, (-1, hd)) for k in ("q", "k", "v")], dim=2)
            wx = torch.einsum("bpD,cdD->bpcd", x, self._w_attn(l))
            s = g_.down_slice(l)
            n_up = g_.n_up_before(l)
            self._add_group(
                ("attn", l),
                x,
                g,
                wx,
                self._r(m.input_norm, x),
                n,
                n_up,
                slice(s.start, s.stop - 1),
            )
            x = resid[("m", l)]
            n_up = g_.n_up_before(l, mlp=True)
            self._add_group(
                ("m", l),
                x,
                grads[("m", l)][:, :, None],
                (x * m.post_norm.weight)[:, :, None],
                self._r(m.post_norm, x),
                n,
                n_up,
                slice(s.stop - 1, s.stop),
            )
        x, norm = resid[("logits",)], self.adapter.final_norm
        self._add_group(
            ("logits",),
            x,
            grads[("logits",)][:, :, None],
            (x * norm.weight)[:, :, None],
            self._r(norm, x),
            n,
            g_.n_up,
            slice(g_.n_down - 1, g_.n_down),
        )

    @torch.no_grad()
    def scores(self) -> torch.Tensor:
        """[B, n_up, n_down]: sum over the steps of (a^corr - a^clean) . G (invalid edges not yet masked)."""
        first = torch.zeros_like(self.second)
        for l, m in enumerate(self.adapter.layers):  # one layer's gradient sums at a time
            w = self._w_attn(l).to(self.acc)
            g_attn = torch.einsum("bpcd,cdD->bpDc", self.head_sums[("attn", l)], w)
            g_mlp = self.head_sums[("m", l)][:, :, 0] * m.post_norm.weight.to(self.acc)
            self._contract(
                first, self.graph.down_slice(l), torch.cat([g_attn, g_mlp[..., None]], -1)
            )
        g_final = self.head_sums[("logits",)][:, :, 0] * self.adapter.final_norm.weight.to(self.acc)
        self._contract(first, slice(self.graph.n_down - 1, self.graph.n_down), g_final[..., None])
        return first - self.second

    def _contract(self, first: torch.Tensor, cols: slice, g: torch.Tensor) -> None:
        """first[:, :, cols] += sum over p of delta[b, p] [n_up, D] @ g[b, p] [D, c]: no transposed
        copy of delta; positions go in chunks that bound the [B, p, n_up, c] product (~256 MB)."""
        B, P, n_up, _ = self.delta.shape
        step = max(1, min(P, (64 << 20) // max(B * n_up * g.shape[-1], 1)))
        for p0 in range(0, P, step):
            d = self.delta[:, p0 : p0 + step].to(self.acc)
            first[:, :, cols] += torch.matmul(d, g[:, p0 : p0 + step]).sum(1)


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="batch")
