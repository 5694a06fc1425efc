"""EAP and EAP-IG edge attribution on a live Hugging Face decoder, plus circuit faithfulness.

For each batch of clean/corrupted prompt pairs:

1. Two forward passes (no grad) capture every upstream node's output on the clean and on the
   corrupted input: a^clean, a^corr [B, P, n_up, D].
2. m forward+backward passes at input embeddings e_k = e_corr + (k/m)(e_clean - e_corr), k = 1..m
   (EAP-IG over the inputs; m = 1 is plain EAP at the clean input) give the metric's gradient with
   respect to every downstream input separately; they are averaged: G [B, P, n_down, D].
3. score(u -> v) = sum over positions of (a_u^corr - a_u^clean) . G_v: the first-order change of the
   metric when edge u -> v carries the corrupted activation. Scores are kept per pair and averaged.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sparks.circuits.adapters import DecoderAdapter, adapter_for
from sparks.circuits.budget import patched_rows, plan_passes
from sparks.circuits.graph import Graph
from sparks.circuits.intervene import EdgePatch, GradientProbe, graph_hooks, norm_eps
from sparks.circuits.pairs import PairBatch
from sparks.circuits.spec import DEFAULT_SCHEDULE, SCHEDULES

IG_SCHEDULES = SCHEDULES


class NonFiniteError(ArithmeticError):
    """The metric or its gradients are NaN/inf (a diverged checkpoint, an fp16 overflow)."""


@dataclass(frozen=True)
class Metric:
    """A metric over the logits at the batch's readout positions: fn(logits [B, T, V], batch,
    clean log-probabilities [B, T, V]) -> [B]."""

    fn: Callable[[torch.Tensor, PairBatch, torch.Tensor], torch.Tensor]
    positions: str  # "last": the last prompt position; "span": every answer-prefix position
    needs_answers: bool
    doc: str


def _logit_diff(out: torch.Tensor, b: PairBatch, ref: torch.Tensor) -> torch.Tensor:
    last = out[:, 0]
    return last.gather(1, b.clean_tok[:, None])[:, 0] - last.gather(1, b.corrupt_tok[:, None])[:, 0]


def _logprob(out: torch.Tensor, b: PairBatch, ref: torch.Tensor) -> torch.Tensor:
    return out[:, 0].log_softmax(-1).gather(1, b.clean_tok[:, None])[:, 0]


def _kl(out: torch.Tensor, b: PairBatch, ref: torch.Tensor) -> torch.Tensor:
    # KL(p_clean || p) per position: 0 on the clean input, grows as the prediction moves away.
    kl = (ref.exp() * (ref - out.log_softmax(-1))).sum(-1)  # [B, T]
    if kl.shape[1] == 1:
        return kl[:, 0]
    w = b.span_w.to(kl.dtype)
    return (kl * w).sum(1) / w.sum(1).clamp_min(1)


METRIC_SPECS: dict[str, Metric] = {
    "logit_diff": Metric(_logit_diff, "last", True, "clean minus corrupted answer token's logit"),
    "logprob": Metric(_logprob, "last", True, "log-probability of the clean answer token"),
    "kl": Metric(_kl, "last", False, "KL(clean || patched) at the last prompt position"),
    "kl_prefix": Metric(
        _kl, "span", False, "KL(clean || patched) averaged over the answer-prefix positions"
    ),
}
METRICS = tuple(METRIC_SPECS)


def metric_spec(name: str) -> Metric:
    if name not in METRIC_SPECS:
        raise ValueError(f"unknown metric {name!r}: use one of {', '.join(METRICS)}")
    return METRIC_SPECS[name]


def check_metric_fits(metric: str, batches: Sequence[PairBatch]) -> None:
    """Answer-token metrics need pairs with answers; say which metric to use instead."""
    spec = metric_spec(metric)
    if spec.needs_answers and not all(b.has_answers for b in batches):
        raise ValueError(
            f"metric {metric!r} compares answer tokens, but these pairs have no answers "
            "(numbers or contrast pairs): use metric kl or kl_prefix"
        )


def choose_metric(metric: str, batches: Sequence[PairBatch]) -> str:
    """`metric`, or for "auto" the one the pairs fit: logit_diff with answer tokens, kl_prefix on
    pairs with an answer-prefix span (contrast), kl otherwise (numbers)."""
    if metric != "auto":
        check_metric_fits(metric, batches)
        return metric
    if all(b.has_answers for b in batches):
        return "logit_diff"
    return "kl_prefix" if any(b.span.shape[1] > 1 for b in batches) else "kl"


def positions(b: PairBatch, metric: str) -> torch.Tensor:
    """[B, T] positions whose next-token logits `metric` reads."""
    return b.last[:, None] if metric_spec(metric).positions == "last" else b.span


@dataclass(frozen=True)
class PatchReference:
    """What patched runs on `batch` need from its clean and corrupted runs, kept by attribution
    (which makes both runs anyway) so faithfulness need not run them again."""

    batch: PairBatch
    ups_corr: torch.Tensor  # [B, P, n_up, D] upstream outputs on the corrupted input
    ref: torch.Tensor  # [B, T, V] log-probabilities at the readout positions on the clean input
    m_clean: torch.Tensor  # [B]
    m_corrupt: torch.Tensor  # [B]


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


def readout(adapter: DecoderAdapter, embeds, mask, pos: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V] at positions `pos` [B, T] only (at least float32): the LM head never
    runs over every position, which for a 150k vocabulary would be the largest tensor of a pass."""
    hidden = adapter.decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
    h = hidden.last_hidden_state[torch.arange(len(pos), device=pos.device)[:, None], pos]
    logits = adapter.lm_head(h)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _run(adapter, graph, embeds, mask, pos, deltas=None, *, capture=True):
    with graph_hooks(adapter, graph, embeds, deltas, capture=capture) as ups:
        out = readout(adapter, embeds, mask, pos)
    return out, ups  # [B, T, V], [B, P, n_up, D] or None


def _finite(x: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise NonFiniteError(
            f"{what} is not finite (NaN or inf): the model diverged or overflowed its dtype"
        )
    return x


def ig_points(steps: int, schedule: str = DEFAULT_SCHEDULE) -> tuple[torch.Tensor, torch.Tensor]:
    """IG quadrature on [0, 1]: interpolation points alpha (0 = corrupted, 1 = clean), in the
    order they are run (highest first), and their weights (summing to 1).

    right: k/m, k = m..1, equal weights (a right Riemann sum; ends on the clean input, so the
    first pass doubles as the clean run). left: k/m, k = m-1..0 (hannamw/EAP-IG's). Both are first
    order: at small m they differ by about (g(clean) - g(corrupt)) / m. midpoint: (k + 1/2)/m,
    second order. gauss: Gauss-Legendre nodes and weights, exact for polynomials of degree
    2m - 1. Rules without the point alpha = 1 run the clean input first with weight 0."""
    if schedule not in IG_SCHEDULES:
        raise ValueError(f"unknown IG schedule {schedule!r}: use one of {', '.join(IG_SCHEDULES)}")
    if steps < 1:
        raise ValueError(
            f"IG steps must be at least 1 (got {steps}): 1 is plain EAP, 5 to 8 the paper's usual"
        )
    k = torch.arange(steps - 1, -1, -1, dtype=torch.float64)
    equal = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    if schedule == "right":
        return (k + 1) / steps, equal
    if schedule == "left":
        return k / steps, equal
    if schedule == "midpoint":
        return (k + 0.5) / steps, equal
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(steps)  # on [-1, 1], ascending
    alphas = torch.from_numpy((x[::-1] + 1) / 2).to(torch.float64)
    return alphas, torch.from_numpy(w[::-1] / 2).to(torch.float64)


def ig_alphas(steps: int, schedule: str = DEFAULT_SCHEDULE) -> torch.Tensor:
    """The interpolation points of `ig_points`, in run order."""
    return ig_points(steps, schedule)[0]


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
) -> Attribution:
    """EAP-IG edge scores of `model` over `batches` of clean/corrupted pairs (steps=1: plain EAP).

    Pairs and IG steps share forward/backward passes as far as memory allows: `tokens_per_pass`
    bounds the tokens of one pass (None: sized from the device's free memory, see `budget`);
    the numbers do not depend on it. `keep_reference=K` keeps the clean/corrupted runs of the
    first micro-batch's first K pairs (`Attribution.reference`) for `faithfulness` to reuse.
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
    per_pair, m_clean, m_corr = [], [], []
    reference = None
    micro = []
    for bi, b in enumerate(batches):
        plan = plan_passes(
            adapter,
            width=b.width,
            pairs=len(b.last),
            steps=len(alphas),
            dtype=dtype,
            positions=positions(b, metric).shape[1],
            tokens_per_pass=tokens_per_pass,
        )
        micro += [
            (bi, b.rows(s, s + plan.pairs), plan.steps) for s in range(0, len(b.last), plan.pairs)
        ]
    for bi, b, per_pass in _progress(micro, progress, "attribution"):
        B = len(b.last)
        pos = positions(b, metric)
        with torch.no_grad():
            e_clean, e_corr = adapter.embed(b.clean_ids), adapter.embed(b.corrupt_ids)
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
                out = readout(adapter, e, bb.mask, pos_n)
            where = f"batch {bi + 1}, IG alphas {[round(float(x), 3) for x in a]}"
            if acc is None:
                clean_out = out[:B].detach()
                ref = clean_out.log_softmax(-1)
                m_clean.append(
                    _finite(spec.fn(clean_out, b, ref), f"the metric on the clean run ({where})")
                )
                with torch.no_grad():
                    corr_out, ups_corr = _run(adapter, graph, e_corr, b.mask, pos)
                m_corr.append(
                    _finite(
                        spec.fn(corr_out, b, ref),
                        f"the metric on the corrupted run (batch {bi + 1})",
                    )
                )
                if keep_reference and reference is None:
                    k = min(keep_reference, B)
                    reference = PatchReference(
                        b.head(k), ups_corr[:k].clone(), ref[:k], m_clean[-1][:k], m_corr[-1][:k]
                    )
                delta = ups_corr.sub_(probe.ups)  # in place: one [B, P, n_up, D] buffer, not three
                del ups_corr
                probe.ups = None
                acc = _EapIgSums(adapter, graph, delta)
            vals = spec.fn(out, bb, ref.repeat(n, 1, 1)).view(n, B)
            m = _finite((vals * weight[:, None]).sum(), f"the metric ({where})")
            grads = probe.output_grads(m)
            for key, g in grads.items():
                _finite(g, f"the gradient at {'.'.join(map(str, key))} ({where})")
            acc.add(probe.resid, grads, n)
            del probe, grads, out
        s = acc.scores()  # the weights sum to 1: the integral's mean
        per_pair.append(_finite(s * valid, f"the edge scores (batch {bi + 1})").detach())
    if not per_pair:
        raise ValueError("no prompt pairs to attribute: the pairs file or dataset is empty")
    return Attribution(
        graph,
        torch.cat(per_pair).cpu(),
        torch.cat(m_clean).cpu(),
        torch.cat(m_corr).cpu(),
        steps,
        metric,
        reference,
        schedule,
    )


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


def patched_metric(
    model,
    batches: Sequence[PairBatch],
    missing: Sequence[torch.Tensor],
    *,
    metric: str,
    tokens_per_pass: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The metric on clean inputs when every edge in each `missing` mask [n_up, n_down] carries
    its corrupted activation instead (exact, no approximation).

    One forward pass runs the corrupted input, the clean input and the clean input under several
    masks side by side (as many as fit `tokens_per_pass`, or the free memory); see `EdgePatch`.
    Returns ([len(missing), N] patched, [N] clean, [N] corrupted)."""
    adapter = adapter_for(model)
    graph = graph_of(adapter)
    out, m_clean, m_corr = [], [], []
    with torch.no_grad():
        for b in batches:
            e_clean, e_corr = adapter.embed(b.clean_ids), adapter.embed(b.corrupt_ids)
            empty = torch.zeros_like(graph.valid)
            per_pass = max(1, _rows_per_pass(model, adapter, b, metric, tokens_per_pass) - 2)
            row = []
            for i in range(0, max(len(missing), 1), per_pass):
                masks = [empty, empty, *missing[i : i + per_pass]]
                e = torch.cat([e_corr] + [e_clean] * (len(masks) - 1))
                ms = _masked_pass(adapter, graph, metric, b, e, masks)
                if i == 0:
                    m_corr.append(ms[0])
                    m_clean.append(ms[1])
                row.append(ms[2:])
            out.append(torch.cat(row))
    return torch.cat(out, dim=1).cpu(), torch.cat(m_clean).cpu(), torch.cat(m_corr).cpu()


def _rows_per_pass(model, adapter, b: PairBatch, metric: str, tokens_per_pass: int | None) -> int:
    """Row blocks of batch `b` one patched (no-grad) pass holds (see `budget.patched_rows`)."""
    return patched_rows(
        adapter,
        tokens=b.clean_ids.numel(),
        dtype=next(model.parameters()).dtype,
        positions=positions(b, metric).shape[1],
        tokens_per_pass=tokens_per_pass,
    )


def _patched_from_reference(
    model,
    r: PatchReference,
    missing: Sequence[torch.Tensor],
    metric: str,
    tokens_per_pass: int | None,
) -> torch.Tensor:
    """[len(missing), B]: as `patched_metric`, with the corrupted activations and the clean
    reference taken from attribution's runs: every row of the pass is a patched run."""
    adapter = adapter_for(model)
    graph = graph_of(adapter)
    b = r.batch
    per_pass = _rows_per_pass(model, adapter, b, metric, tokens_per_pass)
    rows = []
    with torch.no_grad():
        e_clean = adapter.embed(b.clean_ids)
        for i in range(0, len(missing), per_pass):
            masks = missing[i : i + per_pass]
            e = e_clean.repeat(len(masks), 1, 1)
            rows.append(_masked_pass(adapter, graph, metric, b, e, masks, r.ups_corr, r.ref))
    return torch.cat(rows).cpu()


def _masked_pass(adapter, graph, metric, b, e, masks, corrupt_ups=None, ref=None):
    """The metric [len(masks), B] of one forward pass over row blocks of batch `b` (embeddings
    `e`), block r with the edges of masks[r] patched (see `EdgePatch` for `corrupt_ups` None).
    `ref` None: block 1 is the clean run and gives the clean reference."""
    n, B = len(masks), len(b.last)
    bb = b.repeat(n)
    patch = EdgePatch(graph, corrupt_ups, torch.stack([m.to(e.device) for m in masks]))
    out, _ = _run(adapter, graph, e, bb.mask, positions(bb, metric), patch)
    if ref is None:
        ref = out[B : 2 * B].log_softmax(-1)
    return metric_spec(metric).fn(out, bb, ref.repeat(n, 1, 1)).view(n, B)


def faithfulness(
    model,
    batches: Sequence[PairBatch],
    circuits: Sequence[torch.Tensor],
    *,
    metric: str,
    reference: PatchReference | None = None,
    tokens_per_pass: int | None = None,
) -> list[float]:
    """(m_circuit - m_corrupt) / (m_clean - m_corrupt) for each circuit edge mask, means over pairs.

    Every edge outside the circuit carries its corrupted activation; 1.0 means the circuit alone
    recovers the clean behaviour, 0.0 that it recovers nothing. With a `reference` (kept by
    `attribute`), its pairs are used instead of `batches` and their clean and corrupted runs are
    not made again (the same numbers, one pass of patched runs only)."""
    graph = graph_of(adapter_for(model))
    missing = [graph.valid & ~c for c in circuits]
    if reference is not None:
        patched = _patched_from_reference(model, reference, missing, metric, tokens_per_pass)
        m_clean, m_corr = reference.m_clean.cpu(), reference.m_corrupt.cpu()
    else:
        patched, m_clean, m_corr = patched_metric(
            model, batches, missing, metric=metric, tokens_per_pass=tokens_per_pass
        )
    denom = float(m_clean.mean() - m_corr.mean())
    if abs(denom) < 1e-12:
        return [float("nan")] * len(circuits)
    return [float(x - m_corr.mean()) / denom for x in patched.mean(1)]


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="batch")
