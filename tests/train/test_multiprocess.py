"""Training on 2 real processes (DDP over gloo, `accelerate launch`), as a user launches it:
every rank trains, the main process does everything else, and the end state is a one-process
run's (a save, a valid snapshot and ledger rows at every step the config names, one FINISHED
MLflow run, no metric twice, weights in every final/). Then a rank is killed mid-stage in process
mode, and the `post-train` flow with `distributed.processes: 2` resumes and completes the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sparks.circuits.snapshot import FailedSnapshot, read_snapshot
from sparks.train.saves import is_model_dir

ROOT = Path(__file__).resolve().parents[2]
KILLER = ROOT / "tests" / "reliability" / "killer.py"
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
LAUNCH += [str(ROOT / "configs/accelerate/multi_gpu.yaml"), "--num_processes", "2"]
LAUNCH += ["--mixed_precision", "no"]
SAVES = ["stage0-sft/checkpoint-2", "stage0-sft/checkpoint-4"]
SAVES += ["stage1-grpo/checkpoint-1", "stage1-grpo/checkpoint-2"]


def _config(cwd: Path, name: str, mode: str, *, grpo: bool = True) -> dict:
    cfg = {
        "name": name,
        "seed": 1,
        "output_dir": str(cwd / name),
        # a world of its own: the launched ranks build it from scratch, once, in cwd (its base
        # pretrained for a few steps: the shipped base is seed 0's)
        "world": {"seed": 7, "n_train": 200, "n_test": 40, "n_pairs": 16, "pretrain_steps": 20},
        "stages": [
            {"method": "sft", "max_steps": 4, "save_steps": 2, "learning_rate": 3e-3},
            {
                "method": "grpo",
                "max_steps": 2,
                "save_steps": 1,
                "learning_rate": 3e-4,
                "num_generations": 4,
                "max_completion_length": 12,
            },
        ],
        "snapshot": {"mode": mode, "steps": 2, "top_k": 40, "n_pairs": 8, "batch_size": 8},
        "evaluation": {
            "benchmarks": ["world"],
            "every": 2,
            "n": 1,
            "max_tokens": 8,
            "limit": 4,
            "backend": "transformers",
        },
        # a fresh SQLite store: created by the main process only
        "tracking": {"mlflow_uri": f"sqlite:///{cwd}/{name}.db", "experiment": "ranks"},
    }
    if not grpo:
        cfg["stages"] = cfg["stages"][:1]
    return cfg


def _launch(cwd: Path, cfg: dict, *, kill: tuple[str, int] | None = None, env=None, log=False):
    """`accelerate launch -m sparks.cli train CONFIG`, or with `kill` the same run through
    killer.py, which SIGKILLs rank KILL_RANK the n-th time it is inside the phase. With `log`,
    output goes to files (ranks outliving their launcher keep no pipe of ours open)."""
    path = (
        cwd / f"{cfg['name']}.json"
    )  # JSON is YAML too: both `sparks train` and killer.py read it
    path.write_text(json.dumps(cfg))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = ["--main_process_port", str(s.getsockname()[1])]
    what = ["-m", "sparks.cli", "train", str(path)]
    if kill:
        what = [str(KILLER), str(path), kill[0], str(kill[1])]
    env = os.environ | {"PYTHONPATH": str(ROOT)} | (env or {})
    if not log:
        return subprocess.run(
            [*LAUNCH, *port, *what], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
    logs = [cwd / f"{cfg['name']}.{s}" for s in ("out", "err")]
    with open(logs[0], "w") as o, open(logs[1], "w") as e:
        rc = subprocess.run(
            [*LAUNCH, *port, *what], cwd=cwd, env=env, stdout=o, stderr=e
        ).returncode
    return subprocess.CompletedProcess([], rc, logs[0].read_text(), logs[1].read_text())


def end_state(out: Path, uri: str) -> dict:
    """What a finished run must hold, whatever the number of processes."""
    snaps = {}
    for c in [out / "base", *sorted(out.glob("stage*/checkpoint-*"))]:
        snap = read_snapshot(c / "circuit")  # raises on a missing or half-written snapshot
        assert not isinstance(snap, FailedSnapshot), c
        snaps[str(c.relative_to(out))] = snap.step
    ledger = pd.read_parquet(out / "ledger.parquet")
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    runs = client.search_runs([run.info.experiment_id])
    twice = {
        k: n
        for k in run.data.metrics
        if (
            n := [
                s
                for s, c in Counter(m.step for m in client.get_metric_history(run_id, k)).items()
                if c > 1
            ]
        )
    }
    return {
        "checkpoints": sorted(str(p.relative_to(out)) for p in out.glob("stage*/checkpoint-*")),
        "snapshot steps": snaps,
        "ledger steps": sorted(ledger.step.unique().tolist()),
        "ledger rows per step": sorted(Counter(ledger.step).values())
        == [ledger["head"].nunique()] * ledger.step.nunique(),
        "runs": [r.info.status for r in runs],
        "logged twice": twice,
        "loss steps": sorted(m.step for m in client.get_metric_history(run_id, "loss")),
        "final weights": [is_model_dir(p / "final") for p in sorted(out.glob("stage*"))],
        "leftovers": sorted(str(p) for p in out.rglob(".*.tmp-*")),
    }


def expected(saves: list[str], steps: list[int]) -> dict:
    return {
        "checkpoints": saves,
        "snapshot steps": {"base": 0} | dict(zip(saves, steps, strict=True)),
        "ledger steps": [0, *steps],
        "ledger rows per step": True,
        "runs": ["FINISHED"],
        "logged twice": {},
        "loss steps": list(range(1, steps[-1] + 1)),
        "final weights": [True] * len({s.split("/")[0] for s in saves}),
        "leftovers": [],
    }


@pytest.fixture(scope="module")
def cwd(tmp_path_factory):
    return tmp_path_factory.mktemp("ranks")


@pytest.fixture(scope="module")
def inline(cwd) -> tuple[dict, subprocess.CompletedProcess]:
    """An uninterrupted 2-rank run (inline snapshots) from a fresh world and store."""
    cfg = _config(cwd, "inline", "inline")
    return cfg, _launch(cwd, cfg)


def test_two_ranks_inline_from_a_fresh_world_and_store_end_as_one_process_would(inline):
    cfg, r = inline
    assert r.returncode == 0, r.stderr[-4000:]
    summary = json.loads(r.stdout[r.stdout.index("{") :])  # printed once, by the main process
    assert summary["processes"] == 2 and summary["saves"] == 5
    # what the launch started is recorded, and a launch as asked says nothing about itself
    assert summary["launch"] == {"processes": 2, "backend": "gloo", "sharding": "none",
                                 "device": "cpu", "mixed_precision": "no"}  # fmt: skip
    assert "[sparks] launch:" not in r.stdout + r.stderr
    out = Path(cfg["output_dir"])
    assert end_state(out, cfg["tracking"]["mlflow_uri"]) == expected(SAVES, [2, 4, 5, 6])
    # both ranks trained: each wrote its RNG state into every save; retention (the main
    # process's) kept it, with the optimizer state, in each stage's newest save only
    for save in SAVES:
        newest = save in ("stage0-sft/checkpoint-4", "stage1-grpo/checkpoint-2")
        assert {p.name for p in (out / save).glob("rng_state_*.pth")} == (
            {"rng_state_0.pth", "rng_state_1.pth"} if newest else set()
        ), save
        assert (out / save / "model.safetensors").is_file()


def test_a_rank_killed_mid_stage_in_process_mode_then_the_flow_on_two_processes_resumes(
    cwd, prefect_server, monkeypatch
):
    cfg = _config(cwd, "killed", "process", grpo=False)  # GRPO on 2 ranks: the test above
    # rank 1 SIGKILLs itself in its third SFT step: checkpoint-2 is saved, the stage is not done;
    # the launcher then stops rank 0 (and the run) with an error
    r = _launch(cwd, cfg, kill=("trainer-step", 3), env={"KILL_RANK": "1"})
    assert r.returncode != 0 and "SIGKILL" in r.stderr, r.stderr[-3000:]
    out = Path(cfg["output_dir"])
    assert (out / "stage0-sft" / "checkpoint-2").is_dir()
    assert not (out / "stage0-sft" / "final").exists()

    from sparks.config import validate_config
    from sparks.flows.train import post_train

    monkeypatch.chdir(cwd)
    summary = post_train(validate_config(cfg | {"distributed": {"processes": 2}}))
    assert summary["processes"] == 2 and summary["saves"] == 3
    assert summary["launch"]["processes"] == 2  # the launched stage's main rank wrote it
    assert end_state(out, cfg["tracking"]["mlflow_uri"]) == expected(SAVES[:2], [2, 4])


# (phase, n, what is killed): each relaunch starts where the last one died. "launch" kills the
# launcher and both ranks at once (main rank's n-th time in the phase): inside the MLflow store's
# migrations, before the MLflow run's id is written, while the first save's snapshot is written
# (the base's is the first). "launcher" kills the launcher alone at the next save, as killing an
# `accelerate launch` process group does: the ranks (in sessions of their own) go on writing, a
# rerun is refused, `sparks stop` ends them. (A kill inside a trainer step is in the one-process
# test and in the rank-kill test above.)
LAUNCH_KILLS = [
    ("store-migration", 19, "launch"),
    ("run-create", 1, "launch"),
    ("snapshot-write", 2, "launch"),
    ("checkpoint-save", 1, "launcher"),
]


def test_a_two_rank_launch_killed_whole_in_each_phase_ends_as_an_uninterrupted_one(
    cwd, inline, capsys
):
    from sparks.cli import main
    from sparks.train.writers import live_writers

    ref_cfg, ref = inline
    assert ref.returncode == 0, ref.stderr[-3000:]
    cfg = _config(cwd, "launch-kills", "inline") | {"world": ref_cfg["world"]}
    out, uri = Path(cfg["output_dir"]), cfg["tracking"]["mlflow_uri"]
    killed = []
    for phase, n, what in LAUNCH_KILLS:
        r = _launch(cwd, cfg, kill=(phase, n), env={"KILL_RANK": "0", "KILL_WHAT": what}, log=True)
        assert r.returncode != 0, f"{phase}: not killed\n{r.stderr[-3000:]}"
        killed.append(phase)
        if what == "launcher":
            orphans = live_writers(out)
            assert sorted(w.role for w in orphans) == ["rank 0 of 2", "rank 1 of 2"], orphans
            # a rerun now would be a second writer: refused, naming the ranks, nothing started
            path = cwd / f"{cfg['name']}.json"
            assert main(["train", str(path)]) == 2
            err = capsys.readouterr().err
            assert "is being written by pid" in err and "rank" in err and "sparks stop" in err
            assert main(["stop", str(out), "--grace", "10"]) == 0
            assert "stopped" in capsys.readouterr().out
            assert live_writers(out) == []
    r = _launch(cwd, cfg)
    assert r.returncode == 0, r.stderr[-4000:]
    print(f"2-rank launch kills survived: {', '.join(killed)}")
    assert end_state(out, uri) == expected(SAVES, [2, 4, 5, 6])
    # the same circuits at every save as the uninterrupted launch's
    ledger, ref_ledger = (
        pd.read_parquet(Path(c["output_dir"]) / "ledger.parquet") for c in (cfg, ref_cfg)
    )
    heads = [
        x[x.in_circuit].groupby("step")["head"].apply(sorted).to_dict()
        for x in (ledger, ref_ledger)
    ]
    assert heads[0] == heads[1]
    assert (
        sorted(p.name for p in Path(uri.removeprefix("sqlite:///")).parent.glob(".*creating-*"))
        == []
    )
