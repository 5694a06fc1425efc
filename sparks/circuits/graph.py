"""The computation graph of a decoder-only transformer, as EAP-IG sees it, and circuits in it.

Upstream nodes (whose outputs are written into the residual stream), in topological order:
    input, then per layer l: L{l}H0 .. L{l}H{H-1}, M{l}
Downstream inputs (each reads the residual stream on its own), in order:
    per layer l: L{l}H{h}.q for every head, L{l}KV{g}.k and L{l}KV{g}.v for every key/value head,
    M{l}; then logits.
An edge runs from every upstream node to every downstream input that comes after it. Scores live
in one [n_upstream, n_downstream] tensor; `valid` masks the edges that exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


@dataclass(frozen=True)
class Graph:
    n_layers: int
    n_heads: int
    n_kv_heads: int

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads

    @property
    def n_up(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_down_layer(self) -> int:
        return self.n_heads + 2 * self.n_kv_heads + 1

    @property
    def n_down(self) -> int:
        return self.n_layers * self.n_down_layer + 1

    def up_index(self, layer: int, head: int | None = None) -> int:
        """Index of head (layer, head), or of MLP `layer` when head is None."""
        return 1 + layer * (self.n_heads + 1) + (self.n_heads if head is None else head)

    def down_slice(self, layer: int) -> slice:
        """Downstream inputs of layer `layer`: H queries, KV keys, KV values, the MLP."""
        start = layer * self.n_down_layer
        return slice(start, start + self.n_down_layer)

    def n_up_before(self, layer: int, *, mlp: bool = False) -> int:
        """How many upstream nodes precede layer `layer`'s attention (or its MLP)."""
        return 1 + layer * (self.n_heads + 1) + (self.n_heads if mlp else 0)

    @cached_property
    def up_names(self) -> list[str]:
        names = ["input"]
        for l in range(self.n_layers):
            names += [head_name(l, h) for h in range(self.n_heads)] + [f"M{l}"]
        return names

    @cached_property
    def down_names(self) -> list[str]:
        names = []
        for l in range(self.n_layers):
            names += [f"{head_name(l, h)}.q" for h in range(self.n_heads)]
            names += [f"L{l}KV{g}.k" for g in range(self.n_kv_heads)]
            names += [f"L{l}KV{g}.v" for g in range(self.n_kv_heads)]
            names += [f"M{l}"]
        return names + ["logits"]

    @cached_property
    def valid(self) -> torch.Tensor:
        """[n_up, n_down] bool: which edges exist (upstream node computed before the input reads)."""
        v = torch.zeros(self.n_up, self.n_down, dtype=torch.bool)
        for l in range(self.n_layers):
            s = self.down_slice(l)
            v[: self.n_up_before(l), s.start : s.stop - 1] = True
            v[: self.n_up_before(l, mlp=True), s.stop - 1] = True
        v[:, -1] = True
        return v

    @cached_property
    def owner(self) -> torch.Tensor:
        """[n_down, n_up + 1] bool: the node(s) each downstream input feeds; column n_up is logits.

        A key or value input feeds every query head of its group."""
        own = torch.zeros(self.n_down, self.n_up + 1, dtype=torch.bool)
        for l in range(self.n_layers):
            s = self.down_slice(l).start
            for h in range(self.n_heads):
                own[s + h, self.up_index(l, h)] = True
                g = h // self.group
                own[s + self.n_heads + g, self.up_index(l, h)] = True
                own[s + self.n_heads + self.n_kv_heads + g, self.up_index(l, h)] = True
            own[s + self.n_down_layer - 1, self.up_index(l)] = True
        own[-1, -1] = True
        return own

    @cached_property
    def head_index(self) -> torch.Tensor:
        """[n_layers, n_heads] long: upstream index of each head."""
        return torch.tensor(
            [[self.up_index(l, h) for h in range(self.n_heads)] for l in range(self.n_layers)]
        )


class Circuit(NamedTuple):
    edges: torch.Tensor  # [n_up, n_down] bool
    nodes: torch.Tensor  # [n_up] bool: upstream nodes with a circuit edge in or out
    heads: list[str]  # "L{l}H{h}" of heads in the circuit, in graph order


def select_edges(
    graph: Graph, scores: torch.Tensor, *, top_k: int | None = None, threshold: float | None = None
) -> torch.Tensor:
    """[..., n_up, n_down] bool: the top-k valid edges by |score|, or those with |score| >=
    threshold (leading dimensions: independent score tensors)."""
    if (top_k is None) == (threshold is None):
        raise ValueError("give exactly one of top_k or threshold")
    mag = scores.abs().masked_fill(~graph.valid, float("-inf"))
    if threshold is not None:
        return mag >= threshold
    assert top_k is not None
    k = min(top_k, int(graph.valid.sum()))
    flat = mag.flatten(-2)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep.scatter_(-1, flat.topk(k, dim=-1).indices, True)
    return keep.view_as(mag)


def _prune(graph: Graph, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept edges [..., n_up, n_down] and member nodes [..., n_up] (see `prune_to_paths`)."""
    owner = graph.owner.float()
    n = graph.n_up
    feeds = edges.float() @ owner > 0  # [..., n_up, n_up+1]: u feeds node w via a kept edge
    reached = torch.zeros(*edges.shape[:-2], n + 1, dtype=torch.bool)
    reached[..., 0] = True
    for w in range(1, n + 1):  # topological order: a node is reached from reached feeders
        reached[..., w] = (feeds[..., w] & reached[..., :n]).any(-1)
    alive = torch.zeros_like(reached)
    alive[..., -1] = True
    for u in range(n - 1, -1, -1):  # reverse order: a node is alive if it feeds an alive one
        alive[..., u] = (feeds[..., u, :] & alive).any(-1)
    target_alive = alive.float() @ owner.T > 0  # [..., n_down]
    kept = edges & (reached & alive)[..., :n, None] & target_alive[..., None, :]
    # A kept edge into a shared key/value input makes only the group's live heads members.
    fed = (kept.float() @ owner > 0).any(-2)[..., :n] & alive[..., :n]
    nodes = kept.any(-1) | fed
    nodes[..., 0] = kept[..., 0, :].any(-1)
    return kept, nodes


def prune_to_paths(graph: Graph, edges: torch.Tensor) -> Circuit:
    """Keep only edges on some path from input to logits; name the circuit's heads."""
    kept, nodes = _prune(graph, edges)
    heads = [graph.up_names[int(i)] for i in graph.head_index.flatten() if nodes[i]]
    return Circuit(kept, nodes, heads)


def find_circuit(
    graph: Graph, scores: torch.Tensor, *, top_k: int | None = None, threshold: float | None = None
) -> Circuit:
    """The circuit of the top-k (or above-threshold) edges, pruned to input-to-logits paths."""
    return prune_to_paths(graph, select_edges(graph, scores, top_k=top_k, threshold=threshold))


def head_stability(
    graph: Graph, per_pair: torch.Tensor, *, top_k: int, n_boot: int = 50, seed: int = 0
) -> torch.Tensor:
    """[n_layers, n_heads]: how often each head is in the top-k circuit when the prompt pairs are
    resampled with replacement (EAP-IG circuits vary with the sample; this says how much)."""
    gen = torch.Generator().manual_seed(seed)
    n = per_pair.shape[0]
    idx = torch.randint(n, (n_boot, n), generator=gen)
    # All resamples at once: counts [n_boot, n] times per-pair scores is each resample's mean.
    counts = torch.zeros(n_boot, n, dtype=per_pair.dtype).scatter_add_(
        1, idx, torch.ones(n_boot, n, dtype=per_pair.dtype)
    )
    means = (counts @ per_pair.flatten(1) / n).view(n_boot, *per_pair.shape[1:])
    _, nodes = _prune(graph, select_edges(graph, means, top_k=top_k))
    return nodes.float().mean(0)[graph.head_index]
