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


def layer_bytes(*, layers: int, d_model: int, intermediate: int, qkv: int, elt: int) -> int:
    """Bytes per token that a forward+backward through the decoder layers keeps (norms,
    projections, MLP activations, the probe's residuals and gradients); qkv = (H + 2 KV) x d."""
    return layers * (16 * d_model + 6 * intermediate + 4 * qkv) * elt


def graph_bytes(*, layers: int, heads: int, d_model: int, qkv: int, elt: int) -> int:
    """Bytes per pair-token of the graph buffers: the [n_up, D] difference and capture buffers
    and the per-head gradient sums."""
    n_up = 1 + layers * (heads + 1)
    return (2 * n_up * d_model + 2 * layers * qkv) * elt


def token_costs(adapter: DecoderAdapter, dtype: torch.dtype, positions: int = 1) -> tuple[int, int]:
    """(bytes per row-token of one attribution pass, bytes per pair-token of graph buffers)."""
    e = torch.finfo(dtype).bits // 8
    L, D = adapter.n_layers, adapter.d_model
    qkv = (adapter.n_heads + 2 * adapter.n_kv_heads) * adapter.head_dim
    inter = int(getattr(adapter.layers[0].mlp, "intermediate_size", None) or 4 * D)
    vocab = int(adapter.lm_head.weight.shape[0])
    act = layer_bytes(layers=L, d_model=D, intermediate=inter, qkv=qkv, elt=e)
    act += positions * vocab * 4 * 3  # float32 logits, log-probabilities and their gradient
    return act, graph_bytes(layers=L, heads=adapter.n_heads, d_model=D, qkv=qkv, elt=e)


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


def patched_rows(
    adapter: DecoderAdapter,
    *,
    tokens: int,
    dtype: torch.dtype,
    positions: int = 1,
    tokens_per_pass: int | None = None,
) -> int:
    """Row blocks of `tokens` tokens (a batch of pairs) one patched, no-grad pass holds: each
    row-token carries its own `ups` buffer and EdgePatch's corrupted-minus-current difference,
    and a forward without autograd's saved tensors (a quarter of a training pass's)."""
    if tokens_per_pass is not None:
        return max(1, tokens_per_pass // tokens)
    act, graph = token_costs(adapter, dtype, positions)
    budget = SHARE_OF_FREE * free_memory(next(adapter.embed.parameters()).device)
    return max(1, int(budget // (tokens * (graph + act // 4))))
