"""Real architectures' shapes, for what must work without downloading them: memory estimates in
`sparks run --dry-run`, and random-initialised models of real shapes for benchmarks and tests.

The configs are those the hub publishes for each model (the fields that set the shape). A
random model of real depth overflows in float32 with the default initialisation (the residual
stream grows with every layer until the gradients are NaN); `random_model` scales the
projections that write to the residual stream (o_proj, down_proj) by 1/sqrt(2 x layers), as
GPT-2 does, so benchmarks get finite scores.
"""

from __future__ import annotations

import json
from pathlib import Path

_QWEN_VOCAB = 151936
SHAPES: dict[str, dict] = {
    "Qwen/Qwen2.5-0.5B": dict(
        model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=_QWEN_VOCAB,
        max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True,
    ),
    "Qwen/Qwen2.5-Math-1.5B": dict(
        model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, vocab_size=_QWEN_VOCAB,
        max_position_embeddings=4096, rope_theta=1e4, tie_word_embeddings=True,
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": dict(
        model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, vocab_size=_QWEN_VOCAB,
        max_position_embeddings=131072, rope_theta=1e4, tie_word_embeddings=False,
    ),
    "Qwen/Qwen3-8B": dict(
        model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=_QWEN_VOCAB,
        max_position_embeddings=40960, rope_theta=1e6, tie_word_embeddings=False,
    ),
    "meta-llama/Llama-3.2-1B": dict(
        model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
        max_position_embeddings=131072, rope_theta=5e5, tie_word_embeddings=True,
    ),
}  # fmt: skip
CONFIG_CLASSES = {"qwen2": "Qwen2Config", "qwen3": "Qwen3Config", "llama": "LlamaConfig", "mistral": "MistralConfig"}  # fmt: skip


def model_shape(path_or_id: str) -> dict | None:
    """The model's config as a dict: a local directory's config.json, the hub cache's, or a
    known shape; None when none of these is available offline."""
    p = Path(path_or_id) / "config.json"
    if p.is_file():
        return json.loads(p.read_text())
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(path_or_id, local_files_only=True).to_dict()
    except Exception:  # not cached here: fall back to the shapes we know
        return SHAPES.get(path_or_id)


def parameter_count(shape: dict) -> int:
    """Weights of a decoder of `shape` (embeddings, attention, gated MLP, norms, LM head)."""
    D, inter, L = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    H, KV = (
        shape["num_attention_heads"],
        shape.get("num_key_value_heads", shape["num_attention_heads"]),
    )
    d = shape.get("head_dim") or D // H
    V = shape["vocab_size"]
    attn = D * H * d * 2 + D * KV * d * 2 + (H + 2 * KV) * d  # q, o, k, v (+ q/k/v biases)
    per_layer = attn + 3 * D * inter + 2 * D
    return V * D * (1 if shape.get("tie_word_embeddings") else 2) + L * per_layer + D


def random_model(
    name_or_shape: str | dict,
    *,
    dtype: str = "float32",
    seed: int = 0,
    device: str = "cpu",
    **overrides,
):
    """A random-initialised causal LM of a real shape (`overrides` shrink it, e.g. layers or
    vocab_size), with the residual writers scaled so that deep models stay finite; built and
    initialised on `device` (an 8B model initialised on a CPU first takes minutes)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    shape = dict(SHAPES[name_or_shape] if isinstance(name_or_shape, str) else name_or_shape)
    shape.update(overrides)
    family = shape.pop("model_type")
    config = getattr(transformers, CONFIG_CLASSES[family])(**shape)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    scale = (2 * config.num_hidden_layers) ** -0.5
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(scale)
            layer.mlp.down_proj.weight.mul_(scale)
    return model.eval()
