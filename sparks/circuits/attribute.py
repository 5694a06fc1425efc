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
from sparks.circuits.graph import Graph
from sparks.circuits.intervene import EdgePatch, GradientProbe, graph_hooks, norm_eps
from sparks.circuits.pairs import PairBatch

METRICS = ("logit_diff", "logprob", "kl")

Metric = Callable[[torch.Tensor, PairBatch, torch.Tensor | None], torch.Tensor]


def _logit_diff(last: torch.Tensor, b: PairBatch, ref: torch.Tensor | None) -> torch.Tensor:
    return last.gather(1, b.clean_tok[:, None])[:, 0] - last.gather(1, b.corrupt_tok[:, None])[:, 0]


def _logprob(last: torch.Tensor, b: PairBatch, ref: torch.Tensor | None) -> torch.Tensor:
    return last.log_softmax(-1).gather(1, b.clean_tok[:, None])[:, 0]


def _kl(last: torch.Tensor, b: PairBatch, ref: torch.Tensor | None) -> torch.Tensor:
    # KL(p_clean || p): 0 on the clean input, grows as the prediction moves away from it.
    assert ref is not None
    return (ref.exp() * (ref - last.log_softmax(-1))).sum(-1)


METRIC_FNS: dict[str, Metric] = {"logit_diff": _logit_diff, "logprob": _logprob, "kl": _kl}


def metric_fn(name: str) -> Metric:
    if name not in METRIC_FNS:
        raise ValueError(f"unknown metric {name!r}: use one of {', '.join(METRICS)}")
    return METRIC_FNS[name]


@dataclass(frozen=True)
class PatchReference:
    """What patched runs on `batch` need from its clean and corrupted runs, kept by attribution
    (which makes both runs anyway) so faithfulness need not run them again."""

    batch: PairBatch
    ups_corr: torch.Tensor  # [B, P, n_up, D] upstream outputs on the corrupted input
    ref: torch.Tensor  # [B, V] log-probabilities at the last position on the clean input
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
    reference: PatchReference | None = None  # the first batch's first rows, when asked for

    @property
    def scores(self) -> torch.Tensor:
        return self.per_pair.mean(0)

    @property
    def node_scores(self) -> torch.Tensor:
        """[n_up]: first-order change of the metric when the node's whole output is corrupted."""
        return self.scores.sum(1)


def graph_of(adapter: DecoderAdapter) -> Graph:
    return Graph(adapter.n_layers, adapter.n_heads, adapter.n_kv_heads)


def _last_logits(model, adapter, graph, embeds, mask, last, deltas=None, *, capture=True):
    with graph_hooks(adapter, graph, embeds, deltas, capture=capture) as ups:
        logits = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
    return logits[torch.arange(len(last)), last], ups  # [B, V], [B, P, n_up, D] or None


def attribute(
    model,
    batches: Sequence[PairBatch],
    *,
    steps: int = 5,
    metric: str = "logit_diff",
    tokens_per_pass: int = 8192,
    progress: bool = False,
    keep_reference: int = 0,
) -> Attribution:
    """EAP-IG edge scores of `model` over `batches` of clean/corrupted pairs (steps=1: plain EAP).

    Several IG steps share one forward/backward pass while their tokens fit `tokens_per_pass`
    (fewer, larger passes; the same numbers). Lower it if activations do not fit in memory.
    `keep_reference=K` keeps the clean/corrupted runs of the first batch's first K pairs
    (`Attribution.reference`) for `faithfulness` to reuse."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    fn = metric_fn(metric)
    adapter = adapter_for(model)
    graph = graph_of(adapter)
    valid = graph.valid.to(next(model.parameters()).device)
    per_pair, m_clean, m_corr = [], [], []
    reference = None
    for b in _progress(batches, progress, "attribution"):
        B = len(b.last)
        with torch.no_grad():
            e_clean, e_corr = adapter.embed(b.clean_ids), adapter.embed(b.corrupt_ids)
        per_pass = max(1, min(steps, tokens_per_pass // b.clean_ids.numel()))
        acc = ref = None
        # Steps from the clean end: the first pass starts with alpha = 1, the clean input itself
        # (e_clean - 0 * diff is e_clean exactly), so it doubles as the clean run.
        for k1 in range(steps, 0, -per_pass):
            alphas = torch.arange(k1, max(k1 - per_pass, 0), -1, dtype=e_clean.dtype) / steps
            n = len(alphas)
            # [n*B, P, D]: the batch at n points of the straight path from corrupted to clean
            one_minus = (1 - alphas).to(e_clean.device)[:, None, None, None]
            e = (e_clean - one_minus * (e_clean - e_corr)).flatten(0, 1)
            bb = b.repeat(n)
            probe = GradientProbe(adapter, keep_rows=B if acc is None else 0)
            with probe.hooks():
                logits = model(inputs_embeds=e, attention_mask=bb.mask, use_cache=False).logits
            last = logits[torch.arange(len(bb.last)), bb.last]
            if acc is None:
                clean_last = last[:B].detach()
                ref = clean_last.log_softmax(-1)
                m_clean.append(fn(clean_last, b, ref))
                with torch.no_grad():
                    corr_last, ups_corr = _last_logits(
                        model, adapter, graph, e_corr, b.mask, b.last
                    )
                m_corr.append(fn(corr_last, b, ref))
                if keep_reference and reference is None:
                    k = min(keep_reference, B)
                    reference = PatchReference(
                        b.head(k), ups_corr[:k].clone(), ref[:k], m_clean[-1][:k], m_corr[-1][:k]
                    )
                acc = _EapIgSums(adapter, graph, ups_corr - probe.ups)
            m = fn(last, bb, ref.repeat(n, 1)).sum()
            acc.add(probe.resid, probe.output_grads(m), n)
        s = acc.scores() / steps
        per_pair.append((s * valid).detach())
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
    )


class _EapIgSums:
    """Running sums over IG steps that give one batch's per-pair edge scores (see module doc)."""

    @torch.no_grad()
    def __init__(self, adapter: DecoderAdapter, graph: Graph, delta: torch.Tensor):
        self.adapter, self.graph, self.delta = adapter, graph, delta  # delta: [B, P, n_up, D]
        B, D = delta.shape[0], delta.shape[-1]
        self.D = D
        self.w_attn = []  # per layer: W' [C, d, D], C = heads + 2 kv heads
        for m in adapter.layers:
            w = torch.cat([x.weight.view(-1, adapter.head_dim, D) for x in (m.q, m.k, m.v)])
            self.w_attn.append(w * m.input_norm.weight)
        self.head_sums: dict[tuple, torch.Tensor] = {}  # sum_k r_k g_k, per consumer group
        self.second = delta.new_zeros(B, graph.n_up, graph.n_down)  # sum of the second terms

    def _r(self, norm, x):
        dt = torch.promote_types(x.dtype, torch.float32)  # HF's norms compute in at least float32
        return torch.rsqrt(x.to(dt).pow(2).mean(-1, keepdim=True) + norm_eps(norm)).to(x.dtype)

    def _add_group(self, key, x, g, wx, r, n, n_up, cols: slice):
        """x [nB,P,D]; g, wx [nB,P,C,d] (d = D for norm-only consumers); r [nB,P,1]."""
        rs = (r[..., None] * g).unflatten(0, (n, -1)).sum(0)
        self.head_sums[key] = self.head_sums[key] + rs if key in self.head_sums else rs
        c = r.pow(3) * (g * wx).sum(-1) / self.D  # [nB, P, C]
        ax = torch.einsum("bpud,kbpd->kbpu", self.delta[:, :, :n_up], x.unflatten(0, (n, -1)))
        self.second[:, :n_up, cols] += torch.einsum("kbpu,kbpc->buc", ax, c.unflatten(0, (n, -1)))

    @torch.no_grad()
    def add(self, resid: dict, grads: dict, n: int) -> None:
        """Add one pass over n IG steps (resid and grads as GradientProbe keeps them)."""
        g_, hd = self.graph, self.adapter.head_dim
        for l, m in enumerate(self.adapter.layers):
            x = resid[("attn", l)]
            g = torch.cat([grads[(k, l)].unflatten(-1, (-1, hd)) for k in ("q", "k", "v")], dim=2)
            wx = torch.einsum("bpD,cdD->bpcd", x, self.w_attn[l])
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
        B, n_up = self.delta.shape[0], self.graph.n_up
        # [B, n_up, P*D] once, so each consumer's contraction over (P, D) is one bmm, no copies.
        d_t = self.delta.transpose(1, 2).reshape(B, n_up, -1)
        first = torch.zeros_like(self.second)
        for l, m in enumerate(self.adapter.layers):
            s = self.graph.down_slice(l)
            n = self.graph.n_up_before(l, mlp=True)
            g1 = torch.einsum("bpcd,cdD->bpDc", self.head_sums[("attn", l)], self.w_attn[l])
            first[:, :n, s.start : s.stop - 1] = torch.bmm(
                d_t[:, :n], g1.reshape(B, -1, g1.shape[-1])
            )
            gm = self.head_sums[("m", l)][:, :, 0] * m.post_norm.weight
            first[:, :n, s.stop - 1] = torch.bmm(d_t[:, :n], gm.reshape(B, -1, 1))[..., 0]
        gf = self.head_sums[("logits",)][:, :, 0] * self.adapter.final_norm.weight
        first[:, :, -1] = torch.bmm(d_t, gf.reshape(B, -1, 1))[..., 0]
        return first - self.second


def patched_metric(
    model,
    batches: Sequence[PairBatch],
    missing: Sequence[torch.Tensor],
    *,
    metric: str = "logit_diff",
    tokens_per_pass: int = 8192,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The metric on clean inputs when every edge in each `missing` mask [n_up, n_down] carries
    its corrupted activation instead (exact, no approximation).

    One forward pass runs the corrupted input, the clean input and the clean input under several
    masks side by side (as many as fit `tokens_per_pass`); see `EdgePatch`.
    Returns ([len(missing), N] patched, [N] clean, [N] corrupted)."""
    fn = metric_fn(metric)
    adapter = adapter_for(model)
    graph = graph_of(adapter)
    out, m_clean, m_corr = [], [], []
    with torch.no_grad():
        for b in batches:
            e_clean, e_corr = adapter.embed(b.clean_ids), adapter.embed(b.corrupt_ids)
            empty = torch.zeros_like(graph.valid)
            per_pass = max(1, tokens_per_pass // b.clean_ids.numel() - 2)
            row = []
            for i in range(0, max(len(missing), 1), per_pass):
                masks = [empty, empty, *missing[i : i + per_pass]]
                e = torch.cat([e_corr] + [e_clean] * (len(masks) - 1))
                ms = _masked_pass(model, adapter, graph, fn, b, e, masks)
                if i == 0:
                    m_corr.append(ms[0])
                    m_clean.append(ms[1])
                row.append(ms[2:])
            out.append(torch.cat(row))
    return torch.cat(out, dim=1).cpu(), torch.cat(m_clean).cpu(), torch.cat(m_corr).cpu()


def _patched_from_reference(
    model, r: PatchReference, missing: Sequence[torch.Tensor], metric: str, tokens_per_pass: int
) -> torch.Tensor:
    """[len(missing), B]: as `patched_metric`, with the corrupted activations and the clean
    reference taken from attribution's runs: every row of the pass is a patched run."""
    fn = metric_fn(metric)
    adapter = adapter_for(model)
    graph = graph_of(adapter)
    b = r.batch
    per_pass = max(1, tokens_per_pass // b.clean_ids.numel())
    rows = []
    with torch.no_grad():
        e_clean = adapter.embed(b.clean_ids)
        for i in range(0, len(missing), per_pass):
            masks = missing[i : i + per_pass]
            e = e_clean.repeat(len(masks), 1, 1)
            rows.append(_masked_pass(model, adapter, graph, fn, b, e, masks, r.ups_corr, r.ref))
    return torch.cat(rows).cpu()


def _masked_pass(model, adapter, graph, fn, b, e, masks, corrupt_ups=None, ref=None):
    """The metric [len(masks), B] of one forward pass over row blocks of batch `b` (embeddings
    `e`), block r with the edges of masks[r] patched (see `EdgePatch` for `corrupt_ups` None).
    `ref` None: block 1 is the clean run and gives the clean reference."""
    n, B = len(masks), len(b.last)
    bb = b.repeat(n)
    patch = EdgePatch(graph, corrupt_ups, torch.stack([m.to(e.device) for m in masks]))
    last, _ = _last_logits(model, adapter, graph, e, bb.mask, bb.last, patch)
    if ref is None:
        ref = last[B : 2 * B].log_softmax(-1)
    return fn(last, bb, ref.repeat(n, 1)).view(n, B)


def faithfulness(
    model,
    batches: Sequence[PairBatch],
    circuits: Sequence[torch.Tensor],
    *,
    metric: str = "logit_diff",
    reference: PatchReference | None = None,
    tokens_per_pass: int = 8192,
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
