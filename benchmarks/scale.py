"""Scale-out figures on this machine: wall time of one run on 1 and 2 processes, of the same run as
two one-process "machines" on 127.0.0.1, and of snapshotting 8 checkpoints with 1 and 2 Dask
workers. Figures, not a test (the tests check what the runs leave; this says how long they take).

    .venv/bin/python benchmarks/scale.py [--out runs/bench-scale] [--steps 16]

Every run is a real launch (`accelerate launch ... -m sparks.cli train`, gloo on a CPU) of an SFT
stage on the embedded world with an inline snapshot at every save; the fan-out snapshots that
run's 8 saves again (copies without their snapshots) through the `analyze` flow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
LAUNCH += [str(ROOT / "configs/accelerate/multi_gpu.yaml"), "--mixed_precision", "no"]


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _config(out: Path, name: str, steps: int) -> Path:
    cfg = {
        "name": name,
        "seed": 1,
        "output_dir": str(out / name),
        "world": {"seed": 0, "n_train": 400, "n_test": 60, "n_pairs": 24},
        "stages": [
            {"method": "sft", "max_steps": steps, "save_steps": steps // 8, "batch_size": 8}
        ],
        "snapshot": {"steps": 5, "top_k": 40, "n_pairs": 16, "batch_size": 16},
        "evaluation": {"enabled": False},
        "tracking": {"mlflow_uri": f"sqlite:///{out}/mlflow.db", "experiment": "bench-scale"},
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def _timed(cmds: list[list[str]], cwd: Path) -> float:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for c in cmds
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"{' '.join(p.args[:6])} ... failed:\n{err.decode()[-2000:]}")
    return time.perf_counter() - start


def _bare_copies(run: Path, dest: Path) -> list[str]:
    out = []
    for c in sorted(run.glob("stage0-sft/checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        target = dest / c.name
        shutil.copytree(c, target, ignore=shutil.ignore_patterns("circuit", "optimizer.pt"))
        out.append(str(target))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-scale")
    ap.add_argument("--steps", type=int, default=16, help="SFT steps (8 saves)")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # the world is built once, before anything is timed
    subprocess.run(
        [sys.executable, "-c", "from sparks.config import WorldSettings as W; "
         "from sparks.world.build import world_for; world_for(W(n_train=400, n_test=60, n_pairs=24))"],
        cwd=out, check=True, env=os.environ | {"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    rows = []
    one = _config(out, "one", args.steps)
    t1 = _timed([[sys.executable, "-m", "sparks.cli", "train", str(one)]], out)
    rows.append(("1 process", "sparks train", t1))
    two = _config(out, "two", args.steps)
    t2 = _timed([[*LAUNCH, "--num_processes", "2", "--main_process_port", _port(), "-m",
                  "sparks.cli", "train", str(two)]], out)  # fmt: skip
    rows.append(("2 processes (DDP, gloo)", "accelerate launch --num_processes 2", t2))
    machines = _config(out, "machines", args.steps)
    port = _port()
    both = [
        [*LAUNCH, "--num_processes", "2", "--num_machines", "2", "--machine_rank", str(r),
         "--main_process_ip", "127.0.0.1", "--main_process_port", port, "-m", "sparks.cli",
         "train", str(machines)]
        for r in (0, 1)
    ]  # fmt: skip
    rows.append(("2 machines x 1 process on 127.0.0.1", "--num_machines 2", _timed(both, out)))

    from sparks.config import ClusterSettings, SnapshotSettings
    from sparks.flows.analyze import AnalyzeConfig, analyze
    from sparks.flows.cluster import api_for_workers
    from sparks.flows.engine import prefect_env

    prefect_env(out)
    settings = SnapshotSettings(steps=5, top_k=40, n_pairs=16, batch_size=16)
    pairs = str(out / "one" / "pairs.jsonl")
    for workers in (1, 2):
        ckpts = _bare_copies(out / "one", out / f"fanout-{workers}")
        cluster = ClusterSettings(workers=workers)
        cfg = AnalyzeConfig(checkpoints=ckpts, pairs=pairs, snapshot=settings, cluster=cluster)
        with api_for_workers(cluster):
            start = time.perf_counter()
            analyze(cfg)
            took = time.perf_counter() - start
        rows.append((f"8 checkpoints, {workers} Dask worker(s)", "sparks analyze", took))

    print(f"\n{os.cpu_count()} cores; SFT {args.steps} steps, 8 saves, inline snapshot at each\n")
    print("| what | how | wall time (s) |\n|---|---|---|")
    for what, how, t in rows:
        print(f"| {what} | `{how}` | {t:.1f} |")


if __name__ == "__main__":
    main()
