"""Faithfulness: the metric when only a circuit's edges carry the clean run (every other edge
corrupted), relative to the clean and corrupted metrics; patched runs reuse attribution's clean
and corrupted activations where it kept them (`PatchReference`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sparks.circuits.adapters import adapter_for
from sparks.circuits.attribution import PatchReference, _run, graph_of
from sparks.circuits.batches import PairBatch
from sparks.circuits.budget import patched_rows
from sparks.circuits.intervene import EdgePatch
from sparks.circuits.metrics import metric_spec, positions


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
    start = r.prefix.length if r.prefix is not None else 0
    with torch.no_grad():
        e_clean = adapter.embed(b.clean_ids[:, start:])
        for i in range(0, len(missing), per_pass):
            masks = missing[i : i + per_pass]
            e = e_clean.repeat(len(masks), 1, 1)
            rows.append(
                _masked_pass(adapter, graph, metric, b, e, masks, r.ups_corr, r.ref, r.prefix)
            )
    return torch.cat(rows).cpu()


def _masked_pass(adapter, graph, metric, b, e, masks, corrupt_ups=None, ref=None, prefix=None):
    """The metric [len(masks), B] of one forward pass over row blocks of batch `b` (embeddings
    `e`), block r with the edges of masks[r] patched (see `EdgePatch` for `corrupt_ups` None).
    `ref` None: block 1 is the clean run and gives the clean reference. With the batch's shared
    `prefix`, `e` and `corrupt_ups` are the positions after it (no edge differs before it)."""
    n, B = len(masks), len(b.last)
    bb = b.repeat(n)
    patch = EdgePatch(graph, corrupt_ups, torch.stack([m.to(e.device) for m in masks]))
    out, _ = _run(adapter, graph, e, bb.mask, positions(bb, metric), patch, prefix=prefix)
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
