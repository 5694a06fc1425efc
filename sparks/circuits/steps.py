"""IG steps chosen by completeness: `steps: auto`.

EAP-IG's edge scores are a quadrature of gradients along the path from the corrupted to the clean
input. How many points a checkpoint needs is not known in advance (trained models often need more
than their base), so `attribute_auto` raises the step count until the scores are good enough:

1. Attribute at the rule's first count (midpoint 3, right / left 2, gauss 2).
2. Completeness error: |sum of the input node's edge scores - (m_corrupt - m_clean)| / |change|,
   how far the first-order scores are from the metric change they should add up to.
3. Stop when the error is within `tolerance` and, since errors cancel across edges, the top-k
   edges held still: at least STABLE_OVERLAP of them are the same at the last two step counts
   (edges ranked near k swap on noise; demanding all of them doubled the cost on the demo's SFT
   checkpoint for an identical circuit). Else go to the next count, reusing every gradient
   already computed where the rule nests (its old points are among the new ones; only the new
   points are run): midpoint triples (3, 9, 27, 81: the middle third of each new cell is an old
   midpoint), right / left double (2, 4, 8, ...); gauss runs 2, 3, 5, 8, 13, ... afresh.
   On the pretrained organism's checkpoints (make demo, 2026-12-04) midpoint by tripling reached
   <= 2 % at every save for 33 % less time than the fresh 2, 3, 5, 8, 13, ... sequence, whose
   error is not monotone in the count (3.4 % at 5 steps, 7.7 % at 8 on the SFT checkpoint).
   Pairs go on one by one: every pair gets the rule's first two counts; then the pairs settle,
   smallest residual first (a pair's residual: its input edges' sum minus its metric change),
   while the settled pairs' residuals sum to at most tolerance x |the set's change| (so they alone
   cannot take the set over its tolerance), and only the others run the next count. (When all
   could settle and the set still did not stop, the top-k moved: all the pairs at the last count
   go on.) On the demo's saves most pairs settle at 9 steps and the rest at 27, one to five at 81;
   raising the whole set cost 81 steps at 5 of 13 saves. Measured on the demo's checkpoints
   against a 243-step reference (2026-12-04): 0.43 of the pair-steps of raising the whole set,
   every set within 2 %, top-50 edges 96-100 % the reference's; settling each pair only within
   tolerance / N (a union bound) took 0.55. Each pair's scores are exactly those of a direct
   attribution at its own count (tested); `StepChoice.pair_steps` and the snapshot's
   `steps_by_pairs` say where each ended.
4. At `max_steps` the last scores are kept and the snapshot is flagged `capped`, not failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from sparks.circuits.attribution import Attribution, attribute
from sparks.circuits.batches import PairBatch
from sparks.circuits.graph import select_edges
from sparks.circuits.metrics import choose_metric
from sparks.circuits.quadrature import ig_points
from sparks.circuits.spec import SnapshotSpec

FRESH_STEPS = (2, 3, 5, 8, 13, 21, 34, 55, 89, 144)  # gauss
NESTED = {"right": 2, "left": 2, "midpoint": 3}  # rules whose m points are among their f*m points
STABLE_OVERLAP = 0.95  # share of the top-k edges the last two step counts must agree on


@dataclass(frozen=True)
class StepChoice:
    """What `steps: auto` did: the step count kept (the most any pair got), the counts tried,
    the error reached, and how many pairs ended at each count."""

    steps: int
    tried: tuple[int, ...]
    completeness_error: float
    capped: bool
    passes: int  # IG points actually run per pair, summed over pairs (reused ones counted once)
    pair_steps: tuple[int, ...] = ()  # the count each pair ended at, in the pairs' order

    @property
    def pairs_at(self) -> dict[int, int]:
        """Step count -> how many pairs ended there."""
        return dict(sorted(Counter(self.pair_steps).items()))


def _next(schedule: str, m: int) -> int:
    if schedule in NESTED:
        return NESTED[schedule] * m if m else NESTED[schedule]
    return next((s for s in FRESH_STEPS if s > m), 2 * m)


def _new_points(schedule: str, old: int, new: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The points of the `new`-step rule that the `old`-step rule did not have, weighted for the
    `new`-step rule (all of them when the rule does not nest)."""
    alphas, weights = ig_points(new, schedule)
    if schedule not in NESTED or old == 0:
        return alphas, weights
    have = ig_points(old, schedule)[0]
    fresh = ~torch.isclose(alphas[:, None], have[None, :], atol=1e-12).any(1)
    return alphas[fresh], weights[fresh]


def _top(attr: Attribution, top_k: int) -> torch.Tensor:
    return select_edges(attr.graph, attr.scores, top_k=top_k)


def _overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    return int((a & b).sum()) / max(1, int(b.sum()))


def pick_pairs(batches: Sequence[PairBatch], which: torch.Tensor) -> list[PairBatch]:
    """The pairs whose indices (over all `batches`, in order) are in the bool mask `which`."""
    out, offset = [], 0
    for b in batches:
        rows = which[offset : offset + len(b.last)].nonzero()[:, 0]
        offset += len(b.last)
        if len(rows):
            out.append(b.take(rows).trimmed())
    return out


def residuals(attr: Attribution) -> torch.Tensor:
    """[N]: each pair's completeness residual, its input node's edge scores summed minus its
    metric change (m_corrupt - m_clean)."""
    return attr.per_pair[:, 0].sum(-1) - (attr.m_corrupt - attr.m_clean)


def attribute_auto(
    model, batches, spec: SnapshotSpec, *, by_pair: bool = True, **kwargs
) -> tuple[Attribution, StepChoice]:
    """Attribution with as many IG steps as completeness asks for (see the module docstring):
    `spec`'s schedule, metric (auto: chosen for `batches`), tokens per pass, tolerance, cap and
    top-k; `kwargs`: `attribute`'s others (progress, keep_reference, compact).
    `by_pair=False` raises every pair together (the rule before pairs were refined one by one,
    kept for benchmarks/snapshot_sets.py)."""
    schedule, top_k, tolerance, max_steps = (
        spec.schedule, spec.top_k, spec.steps_tolerance, spec.max_steps
    )  # fmt: skip
    kwargs |= {
        "metric": choose_metric(spec.metric, batches),
        "tokens_per_pass": spec.tokens_per_pass,
    }
    n_pairs = sum(len(b.last) for b in batches)
    level = torch.zeros(n_pairs, dtype=torch.long)  # the step count each pair is at
    todo = torch.ones(n_pairs, dtype=torch.bool)
    m, attr, prev_top, tried, passes = 0, None, None, [], 0
    while True:
        nxt = _next(schedule, m)
        if nxt > max_steps and m > 0:
            break
        nxt = min(nxt, max_steps)  # a cap below the rule's first count is the count, flagged
        points = _new_points(schedule, m, nxt)
        part = attribute(
            model, pick_pairs(batches, todo), steps=nxt, schedule=schedule, points=points, **kwargs
        )
        passes += len(points[0]) * int(todo.sum())
        if attr is None:
            attr = part
        else:
            per_pair = attr.per_pair.clone()
            # nested rules: the old points' weights scale by old/new, the new ones are as run
            old = per_pair[todo] * (m / nxt) if schedule in NESTED else 0
            per_pair[todo] = part.per_pair + old
            attr = replace(attr, per_pair=per_pair, steps=nxt)
        level[todo], m = nxt, nxt
        tried.append(m)
        top = _top(attr, top_k)
        stable = prev_top is not None and _overlap(top, prev_top) >= STABLE_OVERLAP
        prev_top = top
        err = attr.completeness_error
        if stable and (err <= tolerance or err != err):
            return attr, _choice(attr, level, tried, False, passes)
        kwargs["keep_reference"] = 0  # faithfulness's pairs were kept by the first count
        todo = level == m
        change = abs(float((attr.m_corrupt - attr.m_clean).sum()))
        if by_pair and len(tried) >= 2 and change > 1e-12:
            go_on = unsettled(residuals(attr).abs(), todo, tolerance * change)
            todo = go_on if go_on.any() else todo  # none: the top-k moved, so they all go on
    assert attr is not None  # the loop runs at least once
    return attr, _choice(attr, level, tried, True, passes)


def unsettled(residual: torch.Tensor, todo: torch.Tensor, budget: float) -> torch.Tensor:
    """Of the pairs in `todo` (at the last count), those that go on: the others settle, smallest
    |residual| first, while the settled pairs' residuals (those settled before included) sum to at
    most `budget` (tolerance x |the set's change|), so the settled pairs alone cannot take the set
    over its tolerance."""
    left = budget - float(residual[~todo].sum())
    go_on = todo.clone()
    for i in sorted(todo.nonzero()[:, 0].tolist(), key=lambda i: float(residual[i])):
        if float(residual[i]) > left:
            break
        left -= float(residual[i])
        go_on[i] = False
    return go_on


def steps_text(steps: int, pairs_at: dict[int, int]) -> str:
    """ "27 IG steps", or where pairs ended at different counts (`pairs_at`: count -> pairs)
    "9-81 IG steps (pairs: 11 at 9, 3 at 27, 2 at 81)"."""
    if len(pairs_at) < 2:
        return f"{steps} IG steps"
    at = ", ".join(f"{n} at {k}" for k, n in sorted(pairs_at.items()))
    return f"{min(pairs_at)}-{max(pairs_at)} IG steps (pairs: {at})"


def _choice(attr, level, tried, capped, passes) -> StepChoice:
    return StepChoice(
        int(level.max()), tuple(tried), attr.completeness_error, capped, passes,
        tuple(level.tolist()),
    )  # fmt: skip
