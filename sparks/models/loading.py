"""Loading causal LMs and tokenizers from a checkpoint directory or a hub id, with clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16", "float64")
# weights as save_pretrained and accelerate write them (not training_args.bin, not optimizer.bin)
WEIGHT_PATTERNS = (
    "*.safetensors",
    "pytorch_model*.bin",
    "*.safetensors.index.json",
    "pytorch_model*.bin.index.json",
    "pytorch_model_fsdp_*",
)


class ModelNotFoundError(FileNotFoundError):
    """A model path or id that does not lead to loadable weights."""


def check_checkpoint(path: str | Path) -> Path:
    """`path` as a checkpoint directory with a config and weights, or a one-line error saying what is missing."""
    p = Path(path)
    if not p.exists():
        raise ModelNotFoundError(
            f"model path {p} does not exist: pass a checkpoint directory (or a hub id)"
        )
    if not (p / "config.json").is_file():
        raise ModelNotFoundError(
            f"{p} has no config.json: pass a directory written by save_pretrained"
        )
    if not any(any(p.glob(pat)) for pat in WEIGHT_PATTERNS):
        if (p / "retention.json").is_file():
            raise ModelNotFoundError(
                f"{p}: its weights were removed after its snapshot and evaluation "
                "(checkpoints.keep_weights: false); its circuit/ and eval/ are kept: use a save "
                "that kept its weights, or the stage's final/"
            )
        raise ModelNotFoundError(
            f"{p} has a config but no weights (*.safetensors or *.bin): the save is incomplete; use another checkpoint"
        )
    return p


def is_local(path_or_id: str) -> bool:
    """A local path (it exists, or looks like one) rather than a hub id such as Qwen/Qwen2.5-Math-1.5B."""
    return (
        Path(path_or_id).exists()
        or path_or_id.startswith((".", "/", "~"))
        or path_or_id.count("/") != 1
    )


def load_model(path_or_id: str | Path, *, dtype: str = "float32", device: str | None = None):
    """A causal LM from a checkpoint directory or a hub id (hub ids need the hub or its cache)."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    src = str(path_or_id)
    if is_local(src):
        src = str(check_checkpoint(src))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, dtype))
    except OSError as e:
        raise ModelNotFoundError(f"cannot load model {src!r}: {str(e).splitlines()[0]}") from e
    return model.to(device)


def load_tokenizer(path_or_id: str | Path):
    """The tokenizer of a checkpoint directory (checked like the model's) or a hub id."""
    from transformers import AutoTokenizer

    if is_local(str(path_or_id)):
        check_checkpoint(path_or_id)
    try:
        return AutoTokenizer.from_pretrained(str(path_or_id))
    except OSError as e:
        raise ModelNotFoundError(
            f"cannot load tokenizer {str(path_or_id)!r}: {str(e).splitlines()[0]}"
        ) from e


def require_chat_template(tokenizer, model) -> None:
    """Refuse a tokenizer without a chat template (prompts are built with it), naming the fix."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{model}: its tokenizer has no chat template: use a chat or instruct model's "
            "tokenizer, or add chat_template to its tokenizer_config.json"
        )


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of what maps text to ids (vocabulary, merges, normalisation, special tokens);
    the chat template and padding settings are not part of it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        for k in ("truncation", "padding"):
            spec.pop(k, None)
        blob = json.dumps(spec, sort_keys=True)
    else:  # a slow tokenizer: its vocabulary is what we can see
        blob = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()
