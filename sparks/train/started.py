"""What a launch actually started, against what was asked: said in one line each at run start.

A launcher can quietly run something other than the config asks: `accelerate launch --cpu
--num_processes 2` starts ONE process, a GPU launch config on a CPU starts as many ranks as it
names (eight on two cores: each gloo rank busy-polls and every step is many times slower), FSDP
and DeepSpeed are ignored on a CPU (plain data parallelism), bf16 mixed precision on a CPU
without bf16 instructions is slower than float32. `started(ranks)` records what ran (processes,
backend, sharding, device, precision) for the summary and MLflow; `differences` says what differs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def started(world_size: int, env: Mapping[str, str] | None = None) -> dict:
    """What this launch runs: processes, backend, sharding, device, mixed precision."""
    import torch

    env = os.environ if env is None else env
    gpu = torch.cuda.is_available()
    backend = "none"
    if world_size > 1:
        import torch.distributed as dist

        backend = str(dist.get_backend()) if dist.is_initialized() else "unknown"
    sharding = "none"
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        sharding = "fsdp" if gpu else "none (FSDP ignored on a CPU)"
    elif env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        sharding = "deepspeed"
    return {
        "processes": world_size,
        "backend": backend,
        "sharding": sharding,
        "device": "cuda" if gpu else "cpu",
        "mixed_precision": env.get("ACCELERATE_MIXED_PRECISION", "no"),
    }


def differences(
    actual: dict, *, asked: int, cores: int, env: Mapping[str, str], bf16_cpu: bool
) -> list[str]:
    """One line per way the launch differs from the config (`asked`: distributed.processes) or
    suits this machine badly.

    >>> env = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"}
    >>> one = {"processes": 1, "device": "cpu", "sharding": "none", "mixed_precision": "no"}
    >>> differences(one, asked=1, cores=2, env=env, bf16_cpu=False)[0][:60]
    'accelerate launch --cpu started ONE process although several'
    """
    lines = []
    n, cpu = actual["processes"], actual["device"] == "cpu"
    if env.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in env and n == 1:
        lines.append(
            "accelerate launch --cpu started ONE process although several were asked "
            "(--num_processes): drop --cpu; multi_gpu.yaml trains over gloo on a CPU"
        )
    elif asked > 1 and n not in (1, asked) or asked > 1 and n == 1 and "RANK" in env:
        lines.append(f"distributed.processes is {asked} but {n} process(es) started")
    if cpu and n > cores:
        lines.append(
            f"{n} ranks on {cores} CPU cores: gloo ranks busy-poll, so every step is many times "
            f"slower; launch at most {cores} (--num_processes)"
        )
    if actual["sharding"].startswith("none (FSDP"):
        lines.append("FSDP is ignored on a CPU: every rank holds the whole model (plain DDP)")
    if cpu and actual["mixed_precision"] == "bf16" and not bf16_cpu:
        lines.append(
            "bf16 mixed precision on a CPU without bf16 instructions is slower than float32: "
            "launch with --mixed_precision no"
        )
    return lines


def bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    return "BF16" in capability or "AMX" in capability
