"""Attribution metrics over the readout positions' logits: logit difference, log-probability, KL
(at the last position or over an answer prefix), and which one a set of pairs supports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sparks.circuits.batches import PairBatch


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
