"""The one place that knows a model family's module names.

Everything else in sparks speaks of layers, heads and nodes. An adapter hands out, per decoder
layer, the modules the circuit hooks need: the two RMSNorms, the q/k/v/o projections and the MLP,
plus the final norm. Qwen2, Qwen3 (q_norm/k_norm come after q_proj/k_proj, so hooking the
projections' outputs is unaffected), Llama and Mistral share Hugging Face's naming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

SUPPORTED_FAMILIES = ("qwen2", "qwen3", "llama", "mistral")


class UnsupportedModelError(ValueError):
    """The model's architecture has no adapter."""


@dataclass(frozen=True)
class LayerModules:
    input_norm: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    post_norm: nn.Module
    mlp: nn.Module


@dataclass(frozen=True)
class DecoderAdapter:
    """Module handles and shape facts of one decoder-only causal LM."""

    family: str
    layers: tuple[LayerModules, ...]
    final_norm: nn.Module
    embed: nn.Module
    decoder: nn.Module  # the stack under the LM head: inputs_embeds -> final-normed hidden states
    lm_head: nn.Module
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def check_architecture(model_dir) -> None:
    """Refuse a checkpoint whose config names a family without an adapter, before loading it."""
    import json
    from pathlib import Path

    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return  # a hub id: checked once the model is loaded
    family = json.loads(config.read_text()).get("model_type")
    if family not in SUPPORTED_FAMILIES:
        raise UnsupportedModelError(
            f"{model_dir}: no circuit adapter for model type {family!r}: supported are "
            f"{', '.join(SUPPORTED_FAMILIES)} (a new family needs an adapter in sparks/circuits/adapters.py)"
        )


def adapter_for(model: nn.Module) -> DecoderAdapter:
    """The adapter for `model`, or UnsupportedModelError naming the supported families."""
    cfg: Any = model.config
    family = getattr(cfg, "model_type", type(model).__name__)
    if family not in SUPPORTED_FAMILIES:
        raise UnsupportedModelError(
            f"no circuit adapter for model type {family!r}: supported are {', '.join(SUPPORTED_FAMILIES)}"
        )
    base: Any = model.model  # the decoder stack under the LM head, in all four families
    layers = tuple(
        LayerModules(
            input_norm=layer.input_layernorm,
            q=layer.self_attn.q_proj,
            k=layer.self_attn.k_proj,
            v=layer.self_attn.v_proj,
            o=layer.self_attn.o_proj,
            post_norm=layer.post_attention_layernorm,
            mlp=layer.mlp,
        )
        for layer in base.layers
    )
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return DecoderAdapter(
        family=family,
        layers=layers,
        final_norm=base.norm,
        embed=base.embed_tokens,
        decoder=base,
        lm_head=model.get_output_embeddings(),
        n_heads=cfg.num_attention_heads,
        n_kv_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
        head_dim=head_dim,
        d_model=cfg.hidden_size,
    )
