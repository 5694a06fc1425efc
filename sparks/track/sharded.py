"""Snapshotting a model whose parameters are sharded over the ranks (FSDP, FSDP2, DeepSpeed ZeRO-3).

EAP-IG needs every weight of the model on one process. For FSDP and FSDP2 the hook gathers them:
1. every rank enters `torch.distributed.checkpoint`'s full-state-dict gather (a collective; a
   gather that only the main process entered would block the others until the timeout);
2. the main process receives the full weights on the CPU and loads them into a plain, unsharded
   copy of the model, which it snapshots while the other ranks wait.
DeepSpeed ZeRO-3 gathers through DeepSpeed's own API; the hook snapshots its consolidated
checkpoints in their own process instead (`zero3_save_16bit_model: true` writes them).
"""

from __future__ import annotations


def sharding(model) -> str | None:
    """'fsdp' for FSDP / FSDP2 parameters, 'zero3' for DeepSpeed ZeRO-3, None for a whole model."""
    if model is None:
        return None
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without distributed support shards nothing
        return None
    if isinstance(model, FullyShardedDataParallel):
        return "fsdp"
    for p in model.parameters():
        if isinstance(p, DTensor):
            return "fsdp"
        if hasattr(p, "ds_id"):
            return "zero3"
    return None


def unsharded_copy(model, *, is_main: bool):
    """A plain copy of a sharded (FSDP / FSDP2) model on the main process, None on the others.
    Every rank must call it: the gather is a collective."""
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from transformers import AutoModelForCausalLM

    # full weights on the main process's CPU only: the other ranks receive nothing
    full = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    if not is_main:
        return None
    config = getattr(model, "config", None) or model.module.config
    dtype = next(iter(full.values())).dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = plain.load_state_dict(full, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(
            f"the gathered weights do not fit the model: missing {sorted(set(missing) - tied)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    plain.tie_weights()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return plain.to(device)
