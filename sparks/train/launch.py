"""Launching a stage's training on several processes, and what a launch config can do here.

`launch_stage` runs `accelerate launch --num_processes N ... -m sparks.cli train CONFIG --stage I`
and waits for it; the launched processes find the run's inputs on disk (the calling process built
them) and their main process logs to the same MLflow run. `launch_problems` reads an accelerate
config the way `accelerate launch` will and says, in one line each, what would stop it or quietly
run something else on this machine (the dry run prints them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from sparks.config import DistributedSettings
from sparks.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def launched() -> bool:
    """Inside a stage that `launch_stage` started: it trains where it is, it never launches again."""
    return os.environ.get("SPARKS_LAUNCHED") == "1"


class LaunchError(UserError):
    """A multi-process launch that failed or cannot start; the message says what to do."""


def config_path(d: DistributedSettings) -> Path:
    """The launch config: as given, or relative to the sparks checkout (configs/accelerate/...)."""
    p = Path(d.launch_config)
    if not p.is_file() and not p.is_absolute() and (ROOT / p).is_file():
        return ROOT / p
    return p


def read_launch_config(d: DistributedSettings) -> dict:
    import yaml

    p = config_path(d)
    if not p.is_file():
        raise LaunchError(
            f"distributed.launch_config {d.launch_config} not found: use one of "
            f"{', '.join(sorted(x.name for x in (ROOT / 'configs/accelerate').glob('*.yaml')))} "
            "under configs/accelerate/"
        )
    return yaml.safe_load(p.read_text()) or {}


def is_deepspeed(d: DistributedSettings) -> bool:
    """Whether a multi-process launch runs DeepSpeed (its checkpoints carry float32 master weights)."""
    if d.processes == 1:
        return False
    try:
        return read_launch_config(d).get("distributed_type") == "DEEPSPEED"
    except LaunchError:  # reported where the launch is checked
        return False


def launch_problems(d: DistributedSettings, *, gpus: int | None = None) -> tuple[list, list]:
    """(problems, notes) of launching `d` here: problems stop the launch, notes say what it does."""
    import importlib.util

    if d.processes == 1:
        return [], []
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    try:
        lc = read_launch_config(d)
    except LaunchError as e:
        return [str(e)], []
    name, kind = Path(d.launch_config).name, lc.get("distributed_type", "NO")
    problems, notes = [], []
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        problems.append(
            f"{name} needs DeepSpeed, which is not installed here: install the gpu extra "
            "(pip install -e '.[gpu]') on a GPU machine, or use fsdp.yaml"
        )
    if lc.get("use_cpu"):
        problems.append(
            f"{name} sets use_cpu: true, which makes accelerate start ONE process: remove it "
            "(multi_gpu.yaml trains over gloo on a CPU)"
        )
    if gpus and d.processes > gpus * max(1, int(lc.get("num_machines", 1))):
        problems.append(
            f"distributed.processes {d.processes} is more than the {gpus} GPU(s) here: one "
            "process per GPU; lower it"
        )
    if not gpus:
        import os

        cores = os.cpu_count() or 1
        if d.processes > cores:
            problems.append(
                f"distributed.processes {d.processes} is more than the {cores} CPU cores here: "
                "gloo ranks busy-poll, so more ranks than cores only slow every step; lower it"
            )
        notes.append(f"no GPU: {d.processes} processes train over gloo on the CPU")
        if kind == "FSDP":
            notes.append(
                f"{name}: accelerate ignores {kind} on a CPU and runs plain data parallelism "
                "(every rank holds the whole model)"
            )
    return problems, notes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(d: DistributedSettings, args: list[str]) -> list[str]:
    """`accelerate launch` of `python -m sparks.cli ARGS` on `d.processes` processes here."""
    import torch

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    cmd += [str(config_path(d)), "--num_processes", str(d.processes), "--num_machines", "1"]
    cmd += ["--machine_rank", "0", "--main_process_port", str(_free_port())]
    if not torch.cuda.is_available():
        cmd += ["--mixed_precision", "no"]  # the shipped configs say bf16, for GPUs
    return cmd + ["-m", "sparks.cli", *args]


def launch_stage(d: DistributedSettings, config: Path, stage: int) -> None:
    """Train stage `stage` of the run whose config is `config` on `d.processes` processes."""
    problems, _ = launch_problems(d)
    if problems:
        raise LaunchError(problems[0])
    cmd = launch_command(d, ["train", str(config), "--stage", str(stage)])
    from sparks.train.writers import TOKEN, token

    # the ranks write output_dir with this process: they share its writer token
    env = os.environ | {"SPARKS_LAUNCHED": "1", "PYTHONPATH": _pythonpath(), TOKEN: token()}
    rc = subprocess.run(cmd, env=env).returncode
    if rc != 0:
        raise LaunchError(
            f"stage {stage} on {d.processes} processes failed (exit status {rc}; the ranks' "
            "errors are above): fix what they name and run again, it resumes from the last save"
        )


def _pythonpath() -> str:
    """The launched processes import sparks (and flows) from where this one does."""
    here = str(ROOT)
    rest = os.environ.get("PYTHONPATH", "")
    return here + (os.pathsep + rest if rest else "")
