"""Real kills: a training run in a subprocess gets SIGKILL inside each dangerous phase in turn,
and each rerun resumes. The end state must equal an uninterrupted run's: the same checkpoints, a
valid snapshot at every save (none half-written), the same ledger, the same evaluations, the same
files kept by checkpoint retention (weights removed once snapshotted and evaluated, optimizer
state only in each stage's newest save), and no MLflow metric logged twice at a step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sparks.circuits.snapshot import FailedSnapshot, read_snapshot
from sparks.train.saves import has_state, has_weights

KILLER = Path(__file__).with_name("killer.py")
ROOT = Path(__file__).resolve().parents[2]

# (phase, n): the n-th time this process is inside the phase. Each rerun starts where the last
# one died, so together they walk through one run in order: the MLflow store's creation (inside
# MLflow's migrations, where an in-place store broke for good; before its rename), the MLflow
# run's creation (before its id is written down), the base snapshot's files, the MLflow
# batch of its metrics, the base evaluation, the second SFT step, the first checkpoint's save, and
# the ledger write after that checkpoint's snapshot, and retention's first removal (the first
# save's optimizer state, once the second save is complete): the rerun resumes from the newest
# save that kept its state.
KILLS = [
    ("store-migration", 19),
    ("store-publish", 1),
    ("run-create", 1),
    ("snapshot-write", 1),
    ("mlflow-upload", 1),
    ("evaluation", 1),
    ("trainer-step", 1, "raise"),  # not a kill: the run fails there, and ends FAILED
    ("trainer-step", 2),
    ("checkpoint-save", 1),
    ("ledger-write", 1),
    ("prune", 1),
    ("evaluation", 1, "term"),  # SIGTERM (`sparks stop`, a scheduler): the run ends KILLED
]


def _config(out: Path, uri: str, world) -> dict:
    spec = world.spec()
    return {
        "name": "kill",
        "seed": 3,
        "output_dir": str(out),
        "world": {k: spec[k] for k in ("seed", "n_train", "n_test", "n_pairs")},
        "stages": [
            {
                "method": "sft",
                "max_steps": 4,
                "save_steps": 2,
                "learning_rate": 3e-3,
                "batch_size": 8,
            },
            {
                "method": "grpo",
                "max_steps": 2,
                "save_steps": 1,
                "learning_rate": 3e-4,
                "batch_size": 8,
                "num_generations": 4,
                "max_completion_length": 12,
            },
        ],
        "snapshot": {"steps": 2, "top_k": 40, "n_pairs": 8, "batch_size": 8},
        "evaluation": {
            "benchmarks": ["world"],
            "every": 2,
            "n": 1,
            "max_tokens": 8,
            "limit": 4,
            "backend": "transformers",
        },
        "tracking": {"mlflow_uri": uri, "experiment": "kills"},
    }


class Runs:
    """Runs of killer.py forked from one process that imported the libraries once (`--serve`):
    each run is a fresh process, killed for real, without paying ~7 s of imports again."""

    def __init__(self, cwd: Path):
        self.cwd, self.n = cwd, 0
        self.proc = subprocess.Popen(
            [sys.executable, str(KILLER), "--serve"],
            cwd=cwd,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, cfg: dict, *phase, env: dict | None = None) -> subprocess.CompletedProcess:
        path = self.cwd / f"{cfg['name']}.json"
        path.write_text(json.dumps(cfg))
        self.n += 1
        out, err = (self.cwd / f"run{self.n}.{s}" for s in ("out", "err"))
        req = {
            "config": str(path),
            "phase": list(phase) or None,
            "stdout": str(out),
            "stderr": str(err),
            "env": env,
        }
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the run server died"
        code = json.loads(line)["returncode"]
        return subprocess.CompletedProcess([], code, out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _ended(out: Path, uri: str, status: str, said: str) -> None:
    """The MLflow run ended `status` with the reason, summary.json says which saves were done, the
    writer lock is released, and one line said it."""
    run = MlflowClient(uri).get_run(json.loads((out / "mlflow_run.json").read_text())["run_id"])
    reason = {"FAILED": "RuntimeError: injected failure", "KILLED": "Terminated: signal SIGTERM"}
    assert run.info.status == status and run.info.end_time is not None, run.info
    assert run.data.tags["sparks.end"] == status
    assert run.data.tags["sparks.end_reason"] == reason[status]
    summary = json.loads((out / "summary.json").read_text())
    saves = sorted(
        int(p.parent.name.split("-")[1]) for p in out.glob("stage0-*/checkpoint-*/circuit")
    )
    assert summary["status"] == status and summary["saves"] == [0, *saves], summary
    assert not list((out / ".writers").glob("*.json"))
    assert f"[sparks] run {status.lower()} ({reason[status]})" in said, said[-2000:]


def _state(out: Path, uri: str) -> dict:
    """What must be the same after kills and resumes as after one uninterrupted run."""
    ckpts = sorted(str(p.relative_to(out)) for p in out.glob("stage*/checkpoint-*"))
    kept = {
        c: [
            what
            for what, there in (("weights", has_weights), ("state", has_state))
            if there(out / c)
        ]
        for c in ckpts
    }
    snaps = {}
    for c in [out / "base", *sorted(out.glob("stage*/checkpoint-*"))]:
        snap = read_snapshot(c / "circuit")  # raises on a half-written or missing snapshot
        assert not isinstance(snap, FailedSnapshot), c
        snaps[str(c.relative_to(out))] = sorted(snap.heads)
    ledger = pd.read_parquet(out / "ledger.parquet")
    evals = {
        str(p.parent.relative_to(out)): json.loads(p.read_text())["world"]["pass@1"]
        for p in out.rglob("eval/metrics.json")
    }
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(uri)
    twice, logged = {}, set()
    for key in client.get_run(run_id).data.metrics:
        counts = Counter(m.step for m in client.get_metric_history(run_id, key))
        if dup := [s for s, n in counts.items() if n > 1]:
            twice[key] = dup
        logged |= {(key, step) for step in counts}
    experiment = client.get_run(run_id).info.experiment_id
    runs = client.search_runs([experiment])
    return {
        "checkpoints": ckpts,
        "kept": kept,
        "snapshots": snaps,
        "ledger": ledger[ledger.in_circuit].groupby("step")["head"].apply(sorted).to_dict(),
        "evaluations": evals,
        "logged twice": twice,
        "logged": logged,
        "mlflow runs": sorted(r.info.status for r in runs),
        "leftovers": sorted(str(p) for p in out.rglob(".*.tmp-*")),
    }


def test_killed_in_every_phase_the_rerun_ends_where_an_uninterrupted_run_does(world, world_cache):
    cwd = world_cache
    uri_ref, uri = f"sqlite:///{cwd}/ref.db", f"sqlite:///{cwd}/kills.db"
    prune = {"checkpoints": {"keep_weights": False}}
    ref = _config(cwd / "reference", uri_ref, world) | {"name": "reference"} | prune
    runs = Runs(cwd)
    try:
        done = runs(ref)
        assert done.returncode == 0, done.stderr[-3000:]
        cfg = _config(cwd / "killed", uri, world) | prune
        killed = []
        for phase, n, *how in KILLS:
            r = runs(cfg, phase, n, env={"KILL_WHAT": how[0]} if how else None)
            if not how:
                assert r.returncode == -signal.SIGKILL, f"{phase}: not killed\n{r.stderr[-3000:]}"
            else:  # a run that fails or is stopped ends its MLflow run and says what was done
                status = {"raise": "FAILED", "term": "KILLED"}[how[0]]
                assert r.returncode == 1, f"{phase}: did not end\n{r.stderr[-3000:]}"
                _ended(cwd / "killed", uri, status, r.stdout + r.stderr)
            killed.append(phase + (f" ({how[0]})" if how else ""))
        final = runs(cfg)
        assert final.returncode == 0, final.stderr[-3000:]
    finally:
        runs.close()
    expected, got = _state(cwd / "reference", uri_ref), _state(cwd / "killed", uri)
    assert got["logged twice"] == {} and expected["logged twice"] == {}
    # one FINISHED run holding every metric the uninterrupted run logged, at the same steps
    assert got["mlflow runs"] == expected["mlflow runs"] == ["FINISHED"]
    assert sorted(p.name for p in cwd.glob(".kills.db.creating-*")) == []  # no half store left
    # a stage killed after its last save never logs its runtime: those figures died with it
    timings = {"train_runtime", "train_samples_per_second", "train_steps_per_second"}
    assert sorted(k for k in expected["logged"] - got["logged"] if k[0] not in timings) == []
    assert sorted(got["logged"] - expected["logged"]) == []
    assert got["leftovers"] == [], "a half-written file or directory was left behind"
    assert got["checkpoints"] == expected["checkpoints"]
    # each stage's newest save keeps weights and state; the others only their circuit and eval/
    assert expected["kept"] == {
        "stage0-sft/checkpoint-2": [],
        "stage0-sft/checkpoint-4": ["weights", "state"],
        "stage1-grpo/checkpoint-1": [],
        "stage1-grpo/checkpoint-2": ["weights", "state"],
    }
    assert got["kept"] == expected["kept"]
    assert got["snapshots"] == expected["snapshots"]
    assert got["ledger"] == expected["ledger"]
    assert got["evaluations"] == expected["evaluations"]
    print(f"kills survived: {len(killed)} of {len(KILLS)} ({', '.join(killed)})")
    _pruned_run_still_reads(cwd / "reference")


def _pruned_run_still_reads(out: Path) -> None:
    """compare, analyze and evaluate-checkpoints on a run whose older saves lost their weights:
    every save is read from its circuit and eval/; what needs weights says so."""
    from sparks.analysis.series import load_sources
    from sparks.flows.analyze import AnalyzeConfig
    from sparks.flows.analyze import targets as snapshot_targets
    from sparks.flows.evaluate import EvaluateConfig
    from sparks.flows.evaluate import targets as evaluation_targets
    from sparks.models.loading import ModelNotFoundError, check_checkpoint

    sources = load_sources([str(out)])
    steps = sorted(step for series in sources.series for step in series.saves)
    assert steps == [2, 4, 5, 6], steps  # every save, pruned or not
    assert {e for series in sources.series for e in series.evals} == {0, 4, 6}  # base too
    found, _ = snapshot_targets(AnalyzeConfig(checkpoints=[str(out)]))
    assert [step for _, step in found] == [2, 4, 5, 6]  # their snapshots are on disk: reused
    evaluated = evaluation_targets(EvaluateConfig(checkpoints=[str(out)]))
    assert [step for _, step in evaluated] == [4, 6]  # the weightless ones are said, not failed
    with pytest.raises(ModelNotFoundError, match="weights were removed after its snapshot"):
        check_checkpoint(out / "stage0-sft" / "checkpoint-2")
