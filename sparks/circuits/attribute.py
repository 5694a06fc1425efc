"""EAP and EAP-IG edge attribution on a live Hugging Face decoder, plus circuit faithfulness.

For each batch of clean/corrupted prompt pairs:

1. Two forward passes (no grad) capture every upstream node's output on the clean and on the
   corrupted input: a^clean, a^corr [B, P, n_up, D].
2. m forward+backward passes at input embeddings e_k = e_corr + (k/m)(e_clean - e_corr), k = 1..m
   (EAP-IG over the inputs; m = 1 is plain EAP at the clean input) give the metric's gradient with
   respect to every downstream input separately; they are averaged: G [B, P, n_down, D].
3. score(u -> v) = sum over positions of (a_u^corr - a_u^clean) . G_v: the first-order change of the
   metric when edge u -> v carries the corrupted activation. Scores are kept per pair and averaged.

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
from sparks.circuits.intervene import EdgePatch, GradientProbe, graph_hooks
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
class Attribution:
    """Edge scores of one attribution run; `scores` is the mean of `per_pair` over pairs."""

    graph: Graph
    per_pair: torch.Tensor  # [N, n_up, n_down], zero on invalid edges
    m_clean: torch.Tensor  # [N]
    m_corrupt: torch.Tensor  # [N]
    steps: int
    metric: str

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


@dataclass
class _Clean:
    """What one batch's clean and corrupted passes give."""

    e_clean: torch.Tensor
    e_corr: torch.Tensor
    ups_clean: torch.Tensor
    ups_corr: torch.Tensor
    m_clean: torch.Tensor
    m_corr: torch.Tensor
    ref: torch.Tensor  # clean log-probs at the last position, for `kl`


def _clean_and_corrupt(model, adapter, graph, b: PairBatch, metric: Metric) -> _Clean:
    # One forward over clean and corrupted stacked: half the passes, same numbers.
    B = len(b.last)
    with torch.no_grad():
        e = adapter.embed(torch.cat([b.clean_ids, b.corrupt_ids]))
        last, ups = _last_logits(model, adapter, graph, e, b.mask.repeat(2, 1), b.last.repeat(2))
        ref = last[:B].log_softmax(-1)
        return _Clean(e[:B], e[B:], ups[:B], ups[B:], metric(last[:B], b, ref), metric(last[B:], b, ref), ref)


def attribute(
    model,
    batches: Sequence[PairBatch],
    *,
    steps: int = 5,
    metric: str = "logit_diff",
    tokens_per_pass: int = 8192,
    progress: bool = False,
) -> Attribution:
    """EAP-IG edge scores of `model` over `batches` of clean/corrupted pairs (steps=1: plain EAP).

    Several IG steps share one forward/backward pass while their tokens fit `tokens_per_pass`
    (fewer, larger passes; the same numbers). Lower it if activations do not fit in memory."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    fn = metric_fn(metric)
    adapter = adapter_for(model)
    graph = graph_of(adapter)
    valid = graph.valid.to(next(model.parameters()).device)
    per_pair, m_clean, m_corr = [], [], []
    for b in _progress(batches, progress, "attribution"):
        c = _clean_and_corrupt(model, adapter, graph, b, fn)
        grads = None
        per_pass = max(1, min(steps, tokens_per_pass // b.clean_ids.numel()))
        for k0 in range(1, steps + 1, per_pass):
            alphas = torch.arange(k0, min(k0 + per_pass, steps + 1), dtype=c.e_clean.dtype) / steps
            n = len(alphas)
            # [n*B, P, D]: the batch at n points of the straight path from corrupted to clean
            e = (c.e_corr + alphas.to(c.e_clean.device)[:, None, None, None] * (c.e_clean - c.e_corr)).flatten(0, 1)
            bb = b.repeat(n)
            probe = GradientProbe(adapter, graph)
            with probe.hooks():
                logits = model(inputs_embeds=e.detach(), attention_mask=bb.mask, use_cache=False).logits
            m = fn(logits[torch.arange(len(bb.last)), bb.last], bb, c.ref.repeat(n, 1)).sum()
            g = probe.grads(m).unflatten(0, (n, -1)).sum(0)
            grads = g if grads is None else grads.add_(g)
        delta = c.ups_corr - c.ups_clean  # [B, P, n_up, D]
        s = torch.einsum("bpud,bpvd->buv", delta, grads / steps)
        per_pair.append((s * valid).detach())
        m_clean.append(c.m_clean)
        m_corr.append(c.m_corr)
    if not per_pair:
        raise ValueError("no prompt pairs to attribute: the pairs file or dataset is empty")
    return Attribution(graph, torch.cat(per_pair).cpu(), torch.cat(m_clean).cpu(), torch.cat(m_corr).cpu(), steps, metric)


def patched_metric(
    model, batches: Sequence[PairBatch], missing: Sequence[torch.Tensor], *, metric: str = "logit_diff"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The metric on clean inputs when every edge in each `missing` mask [n_up, n_down] carries
    its corrupted activation instead (exact, no approximation).

    Returns ([len(missing), N] patched, [N] clean, [N] corrupted)."""
    fn = metric_fn(metric)
    adapter = adapter_for(model)
    graph = graph_of(adapter)
    out, m_clean, m_corr = [], [], []
    with torch.no_grad():
        for b in batches:
            c = _clean_and_corrupt(model, adapter, graph, b, fn)
            row = []
            for miss in missing:
                patch = EdgePatch(graph, c.ups_corr, miss.to(c.ups_corr.device))
                last, _ = _last_logits(model, adapter, graph, c.e_clean, b.mask, b.last, patch)
                row.append(fn(last, b, c.ref))
            out.append(torch.stack(row))
            m_clean.append(c.m_clean)
            m_corr.append(c.m_corr)
    return torch.cat(out, dim=1).cpu(), torch.cat(m_clean).cpu(), torch.cat(m_corr).cpu()


def faithfulness(
    model, batches: Sequence[PairBatch], circuits: Sequence[torch.Tensor], *, metric: str = "logit_diff"
) -> list[float]:
    """(m_circuit - m_corrupt) / (m_clean - m_corrupt) for each circuit edge mask, means over pairs.

    Every edge outside the circuit carries its corrupted activation; 1.0 means the circuit alone
    recovers the clean behaviour, 0.0 that it recovers nothing."""
    graph = graph_of(adapter_for(model))
    patched, m_clean, m_corr = patched_metric(model, batches, [graph.valid & ~c for c in circuits], metric=metric)
    denom = float(m_clean.mean() - m_corr.mean())
    if abs(denom) < 1e-12:
        return [float("nan")] * len(circuits)
    return [float(x - m_corr.mean()) / denom for x in patched.mean(1)]


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="batch")
