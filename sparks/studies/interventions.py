"""Head interventions: zero-ablate or scale attention heads' outputs.

A head's output is its slice of o_proj's input times the matching columns of o_proj's weight, so
scaling those columns by s scales exactly that head's contribution to the residual stream (o_proj
has no bias in Qwen2/Qwen3/Llama/Mistral). `write_scaled_checkpoint` writes such an edited copy;
`scaled_heads` does the same at run time with a pre-hook on o_proj (for quick experiments and as the
reference the edit is tested against).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from sparks.circuits.adapters import adapter_for
from sparks.files import atomic_dir

HEAD = re.compile(r"^L(\d+)H(\d+)$")


def parse_heads(
    spec: str | list[str], *, n_layers: int | None = None, n_heads: int | None = None
) -> list[tuple[int, int]]:
    """'L12H3,L14H0' -> [(12, 3), (14, 0)], checked against the model's shape when given."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise ValueError("no heads given: pass heads as L{layer}H{head}, e.g. L12H3,L14H0")
    heads = []
    for s in items:
        m = HEAD.match(s)
        if not m:
            raise ValueError(f"bad head {s!r}: write heads as L{{layer}}H{{head}}, e.g. L12H3")
        l, h = int(m[1]), int(m[2])
        if (n_layers is not None and l >= n_layers) or (n_heads is not None and h >= n_heads):
            raise ValueError(f"head {s} is outside the model ({n_layers} layers x {n_heads} heads)")
        heads.append((l, h))
    return heads


def scale_heads_(model, heads: list[tuple[int, int]], scale: float) -> None:
    """Scale the o_proj columns of `heads` by `scale`, in place."""
    a = adapter_for(model)
    with torch.no_grad():
        for l, h in heads:
            a.layers[l].o.weight[:, h * a.head_dim : (h + 1) * a.head_dim] *= scale


@contextmanager
def scaled_heads(model, heads: list[tuple[int, int]], scale: float) -> Iterator[None]:
    """Scale `heads`' outputs at run time (a pre-hook on o_proj); removed on exit."""
    a = adapter_for(model)
    by_layer: dict[int, list[int]] = {}
    for l, h in heads:
        by_layer.setdefault(l, []).append(h)

    def hook_for(hs):
        def hook(mod, args):
            z = args[0].clone()
            for h in hs:
                z[..., h * a.head_dim : (h + 1) * a.head_dim] *= scale
            return (z, *args[1:])

        return hook

    handles = [a.layers[l].o.register_forward_pre_hook(hook_for(hs)) for l, hs in by_layer.items()]
    try:
        yield
    finally:
        for hd in handles:
            hd.remove()


def write_scaled_checkpoint(
    model_dir: str | Path, heads: str | list[str], scale: float, out_dir: str | Path
) -> Path:
    """Copy of the checkpoint at `model_dir` with `heads` scaled by `scale`, written atomically."""
    from transformers import AutoConfig

    from sparks.models.loading import check_checkpoint, load_model, load_tokenizer

    if Path(out_dir).exists():
        raise FileExistsError(f"{out_dir} already exists: choose another --out")
    cfg = AutoConfig.from_pretrained(str(check_checkpoint(model_dir)))
    parsed = parse_heads(
        heads, n_layers=cfg.num_hidden_layers, n_heads=cfg.num_attention_heads
    )  # before any loading
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, device="cpu")
    scale_heads_(model, parsed, scale)
    with atomic_dir(Path(out_dir)) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "sparks_intervention.json").write_text(
            json.dumps(
                {
                    "source": str(model_dir),
                    "heads": [f"L{l}H{h}" for l, h in parsed],
                    "scale": scale,
                },
                indent=2,
            )
        )
    return Path(out_dir)
