"""How many pairs and IG steps share one forward/backward pass, sized from the memory there is.

An attribution pass over R rows (IG steps x pairs) of P tokens holds, besides the weights:
- per row-token, what autograd keeps for the backward pass (every layer's norms, projections and
  MLP activations) plus the probe's residual streams and gradients, and the logits at the readout
  positions;
- per pair-token (not per step), the graph buffers: every upstream node's output on the corrupted
  input and its difference to the clean run [B, P, n_up, D], and the per-head gradient sums.
The defaults leave half of the free memory to everything else (allocator slack, the optimizer
state when the hook runs beside training). `tokens_per_pass` overrides the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparks.circuits.adapters import DecoderAdapter

SHARE_OF_FREE = 0.5


@dataclass(frozen=True)
class PassPlan:
    pairs: int  # pairs per micro-batch
    steps: int  # IG steps per forward/backward pass


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` (GPU: as CUDA reports it; CPU: the OS's available memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:  # pragma: no cover - psutil comes with mlflow and prefect
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def token_costs(adapter: DecoderAdapter, dtype: torch.dtype, positions: int = 1) -> tuple[int, int]:
    """(bytes per row-token of one attribution pass, bytes per pair-token of graph buffers)."""
    e = torch.finfo(dtype).bits // 8
    L, D, d = adapter.n_layers, adapter.d_model, adapter.head_dim
    C = (adapter.n_heads + 2 * adapter.n_kv_heads) * d
    inter = getattr(adapter.layers[0].mlp, "intermediate_size", None) or 4 * D
    n_up = 1 + L * (adapter.n_heads + 1)
    vocab = adapter.lm_head.weight.shape[0]
    act = L * (16 * D + 6 * inter + 4 * C) * e + positions * vocab * 4 * 3
    graph = (2 * n_up * D + 2 * L * C) * e
    return act, graph


def plan_passes(
    adapter: DecoderAdapter,
    *,
    width: int,
    pairs: int,
    steps: int,
    dtype: torch.dtype,
    positions: int = 1,
    tokens_per_pass: int | None = None,
    budget: int | None = None,
) -> PassPlan:
    """Pairs per micro-batch and IG steps per pass for a batch of `pairs` pairs of `width` tokens.

    With `tokens_per_pass`, a pass holds at most that many tokens (at least one pair, one step);
    otherwise the plan fits `budget` bytes (default: half the device's free memory)."""
    if tokens_per_pass is not None:
        n = max(1, min(pairs, tokens_per_pass // width))
        return PassPlan(n, max(1, min(steps, tokens_per_pass // (n * width))))
    act, graph = token_costs(adapter, dtype, positions)
    if budget is None:
        budget = int(SHARE_OF_FREE * free_memory(next(adapter.embed.parameters()).device))
    n = max(1, min(pairs, budget // (width * (graph + act))))
    left = budget - n * width * graph
    return PassPlan(n, max(1, min(steps, left // (n * width * act))))
