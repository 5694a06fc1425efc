"""Hooks that give every downstream input of the graph its own copy of the residual stream.

On the live Hugging Face model, with plain PyTorch hooks and no conversion:

1. Capture. The input embeddings, each head's output (its slice of o_proj applied to its slice of
   o_proj's input) and each MLP's output are written into one buffer `ups` [B, P, n_up, D].
2. Split. For a layer that has deltas, q_proj / k_proj / v_proj outputs are recomputed head by head
   from `norm(x + delta_head)` (x = the residual stream read by input_layernorm), the MLP reads
   `post_norm(x_mid + delta_mlp)` and the final norm reads `x_final + delta_logits`. With all deltas
   zero the model computes exactly what it did before.
3. Deltas:
   - `EdgePatch`: delta_v = scale * sum_u missing[u, v] * (a_u^corrupt - a_u^current), i.e. every
     missing edge carries the corrupted activation instead of the current one (faithfulness, exact
     single-edge effects).

`GradientProbe` gets the same per-input gradients without changing the forward pass at all (cheap
enough for every IG step); the split forward above is the independent reference it is tested
against. `graph_hooks` and `GradientProbe.hooks` are context managers: it removes exactly the hooks it added, also on error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from sparks.circuits.adapters import DecoderAdapter
from sparks.circuits.graph import Graph


class _Deltas:
    """Base: provides no deltas (plain capture)."""

    def layer(
        self, l: int, ups: torch.Tensor, n: int
    ):  # -> (dq, dk, dv) each [B,P,heads,D] or None
        return None

    def mlp(self, l: int, ups: torch.Tensor, n: int):  # -> [B,P,D] or None
        return None

    def logits(self, ups: torch.Tensor, n: int):  # -> [B,P,D] or None
        return None


class GradientProbe:
    """Keeps, from one plain forward pass, what per-input gradients are made of.

    The forward pass is the model's own; hooks keep the residual stream read by each norm and the
    outputs of q/k/v_proj, the post-attention norm and the final norm. `output_grads(metric)` takes
    autograd.grad at those outputs; attribution maps them back to each consumer's own residual
    input (through the head's projection slice and RMSNorm's Jacobian) without materialising
    per-head residual-sized tensors.

    With `keep_rows=B` it also keeps every upstream node's output for the first B rows (`ups`,
    [B, P, n_up, D]): when those rows are the clean input, the pass doubles as the clean run.
    """

    def __init__(self, adapter: DecoderAdapter, keep_rows: int = 0):
        self.adapter, self.keep_rows = adapter, keep_rows
        self.resid: dict[tuple, torch.Tensor] = {}  # norm inputs x [B,P,D]
        self.outs: dict[tuple, torch.Tensor] = {}  # tensors to differentiate at
        self.ups: torch.Tensor | None = None

    @contextmanager
    def hooks(self) -> Iterator[None]:
        handles = []
        a, rows = self.adapter, self.keep_rows
        graph = Graph(a.n_layers, a.n_heads, a.n_kv_heads)

        def keep_in(key):
            def hook(mod, args):
                self.resid[key] = args[0]

            return hook

        def keep_out(key):
            def hook(mod, args, out):
                self.outs[key] = out

            return hook

        def keep_embeds(mod, args):
            x = args[0][:rows].detach()
            self.ups = x.new_zeros(*x.shape[:2], graph.n_up, x.shape[-1])
            self.ups[:, :, 0] = x

        def keep_heads(l):
            def hook(mod, args):
                h0 = graph.up_index(l, 0)
                self.ups[:, :, h0 : h0 + a.n_heads] = head_outputs(args[0][:rows], mod, a.n_heads)

            return hook

        def keep_mlp(l):
            def hook(mod, args, out):
                self.ups[:, :, graph.up_index(l)] = out[:rows].detach()

            return hook

        try:
            for l, m in enumerate(a.layers):
                handles.append(m.input_norm.register_forward_pre_hook(keep_in(("attn", l))))
                for name in ("q", "k", "v"):
                    handles.append(getattr(m, name).register_forward_hook(keep_out((name, l))))
                handles.append(m.post_norm.register_forward_pre_hook(keep_in(("m", l))))
                handles.append(m.post_norm.register_forward_hook(keep_out(("m", l))))
                if rows:
                    if l == 0:
                        handles.append(m.input_norm.register_forward_pre_hook(keep_embeds))
                    handles.append(m.o.register_forward_pre_hook(keep_heads(l)))
                    handles.append(m.mlp.register_forward_hook(keep_mlp(l)))
            handles.append(a.final_norm.register_forward_pre_hook(keep_in(("logits",))))
            handles.append(a.final_norm.register_forward_hook(keep_out(("logits",))))
            yield
        finally:
            for h in handles:
                h.remove()

    def output_grads(self, metric: torch.Tensor) -> dict[tuple, torch.Tensor]:
        """d metric / d (each kept output), keyed like the outputs: ("q", l), ("m", l), ("logits",)."""
        keys = list(self.outs)
        return dict(
            zip(keys, torch.autograd.grad(metric, [self.outs[k] for k in keys]), strict=True)
        )


def norm_eps(norm: torch.nn.Module) -> float:
    eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", None)
    return float(eps) if eps is not None else 1e-6


class EdgePatch(_Deltas):
    """Missing edges carry corrupted activations: delta_v = scale * sum_u missing[u,v] (a_u^corr - a_u^cur).

    `missing` is one mask [n_up, n_down] for the whole batch, or R masks [R, n_up, n_down] for R
    equal row blocks of it (block r patched by mask r). `corrupt_ups` None means the corrupted
    activations come from block 0 of the same forward pass, which must then be the corrupted input
    with an empty mask: a layer reads only nodes computed before it, which block 0 has already
    written into `ups`. So a corrupted run and several patched runs take one forward pass.
    """

    def __init__(
        self,
        graph: Graph,
        corrupt_ups: torch.Tensor | None,
        missing: torch.Tensor,
        scale: torch.Tensor | float = 1.0,
    ):
        if corrupt_ups is None and missing.dim() == 2:
            raise ValueError("EdgePatch: give corrupt_ups, or one mask per row block")
        self.graph, self.corrupt, self.scale = graph, corrupt_ups, scale
        self.missing = missing & graph.valid.to(
            missing.device
        )  # bool, as the activations' dtype below

    def _delta(self, ups: torch.Tensor, n: int, cols: slice) -> torch.Tensor:
        # [v, n] @ [..., n, D] per position: a batched matmul, no permuted copies of the
        # [rows, P, n, D] difference (einsum's route was 2x slower on the CPU).
        m = self.missing[..., :n, cols].transpose(-1, -2).to(ups.dtype)
        if m.dim() == 2:
            assert self.corrupt is not None  # one mask for every row: patched from corrupt
            d = torch.matmul(m, self.corrupt[:, :, :n] - ups[:, :, :n])
        else:
            cur = ups[:, :, :n].unflatten(0, (len(m), -1))  # [R, B, P, n, D]
            corr = self.corrupt if self.corrupt is not None else ups[: cur.shape[1]]
            d = torch.matmul(m[:, None, None], corr[None, :, :, :n] - cur).flatten(0, 1)
        return d if isinstance(self.scale, float) and self.scale == 1.0 else self.scale * d

    def layer(self, l, ups, n):
        g = self.graph
        d = self._delta(ups, n, slice(g.down_slice(l).start, g.down_slice(l).stop - 1))
        return (
            d[:, :, : g.n_heads],
            d[:, :, g.n_heads : g.n_heads + g.n_kv_heads],
            d[:, :, g.n_heads + g.n_kv_heads :],
        )

    def mlp(self, l, ups, n):
        s = self.graph.down_slice(l).stop - 1
        return self._delta(ups, n, slice(s, s + 1))[:, :, 0]

    def logits(self, ups, n):
        return self._delta(ups, n, slice(self.graph.n_down - 1, self.graph.n_down))[:, :, 0]


def head_outputs(z: torch.Tensor, o_proj: torch.nn.Linear, n_heads: int) -> torch.Tensor:
    """o_proj's input z [B,P,H*d] -> each head's contribution to its output [B,P,H,D]."""
    B, P = z.shape[:2]
    w = o_proj.weight.view(o_proj.weight.shape[0], n_heads, -1)  # [D,H,d]
    return torch.einsum("bphd,Dhd->bphD", z.detach().view(B, P, n_heads, -1), w)


def _per_head_linear(x: torch.Tensor, lin: torch.nn.Linear, heads: int) -> torch.Tensor:
    """x [B,P,heads,D] -> [B,P,heads*d]: head i's slice of `lin` applied to x[:, :, i]."""
    w = lin.weight.view(heads, -1, lin.weight.shape[-1])  # [heads, d, D]
    out = torch.einsum("bphD,hdD->bphd", x, w)
    if lin.bias is not None:
        out = out + lin.bias.view(heads, -1)
    return out.flatten(2)


@contextmanager
def graph_hooks(
    adapter: DecoderAdapter,
    graph: Graph,
    embeds: torch.Tensor,
    deltas: _Deltas | None = None,
    *,
    capture: bool = True,
) -> Iterator[torch.Tensor | None]:
    """Install the hooks for one forward pass on `embeds` [B,P,D]; yields the `ups` buffer.

    `capture=False` skips filling `ups` (the gradient passes need no activations): yields None."""
    deltas = deltas or _Deltas()
    B, P, D = embeds.shape
    if isinstance(deltas, EdgePatch) and not capture:
        raise ValueError("EdgePatch needs the current activations: use capture=True")
    ups = embeds.new_zeros(B, P, graph.n_up, D) if capture else None
    if ups is not None:
        ups[:, :, 0] = embeds.detach()
    state: dict = {}
    handles = []

    def attn_pre(l):
        def hook(mod, args):
            x = args[0]
            state["x"], state["norm"] = x, mod
            n = graph.n_up_before(l)
            state["d"] = deltas.layer(l, ups if ups is not None else x[:, :, None], n)

        return hook

    def proj(which, heads):
        def hook(mod, args, out):
            d = state["d"]
            if d is None:
                return None
            normed = state["norm"].forward(
                state["x"][:, :, None, :] + d[which]
            )  # not __call__: no re-entry
            return _per_head_linear(normed, mod, heads)

        return hook

    def o_pre(l):
        def hook(mod, args):
            if ups is None:
                return None
            h0 = graph.up_index(l, 0)
            ups[:, :, h0 : h0 + graph.n_heads] = head_outputs(args[0], mod, graph.n_heads)
            return None

        return hook

    def mlp_norm(l):
        def hook(mod, args, out):
            d = deltas.mlp(
                l, ups if ups is not None else args[0][:, :, None], graph.n_up_before(l, mlp=True)
            )
            # mod.forward, not mod(...): calling the module would run this hook again.
            return None if d is None else mod.forward(args[0] + d)

        return hook

    def mlp_out(l):
        def hook(mod, args, out):
            if ups is not None:
                ups[:, :, graph.up_index(l)] = out.detach()

        return hook

    def final_pre(mod, args):
        d = deltas.logits(ups if ups is not None else args[0][:, :, None], graph.n_up)
        return None if d is None else (args[0] + d,)

    try:
        for l, m in enumerate(adapter.layers):
            handles.append(m.input_norm.register_forward_pre_hook(attn_pre(l)))
            handles.append(m.q.register_forward_hook(proj(0, graph.n_heads)))
            handles.append(m.k.register_forward_hook(proj(1, graph.n_kv_heads)))
            handles.append(m.v.register_forward_hook(proj(2, graph.n_kv_heads)))
            handles.append(m.o.register_forward_pre_hook(o_pre(l)))
            handles.append(m.post_norm.register_forward_hook(mlp_norm(l)))
            handles.append(m.mlp.register_forward_hook(mlp_out(l)))
        handles.append(adapter.final_norm.register_forward_pre_hook(final_pre))
        yield ups
    finally:
        for h in handles:
            h.remove()
