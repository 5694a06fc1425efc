"""The `sparks` command line: world build, and one-line errors that leave existing files alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _sparks(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparks.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def test_world_build_writes_a_world_and_refuses_a_foreign_directory(tmp_path):
    out = tmp_path / "w"
    # seed 7 has no shipped base: it is pretrained, briefly, into tmp_path/bases
    done = _sparks("world", "build", str(out), "--seed", "7", "--pretrain-steps", "8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "world ready in" in done.stdout and "pretrained 8 steps" in done.stdout
    assert (tmp_path / "bases").is_dir()
    neg = _sparks("world", "build", str(tmp_path / "w2"), "--pretrain-steps", "-1", cwd=tmp_path)
    assert neg.returncode == 2 and "--pretrain-steps: must be at least 0" in neg.stderr
    assert not (tmp_path / "w2").exists()
    assert {p.name for p in out.iterdir()} == {"model", "tasks", "pairs.jsonl", "world.json"}
    assert (out / "model" / "model.safetensors").is_file() and (
        out / "model" / "tokenizer.json"
    ).is_file()

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    bad = _sparks("world", "build", str(foreign), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith("sparks: error: ") and bad.stderr.count("\n") == 1
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_demo_with_a_malformed_config_fails_in_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("stages:\n  - {method: sft, max_steps: 0}\n")
    done = _sparks("demo", "--config", str(cfg), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert "stages.0.max_steps: Input should be greater than or equal to 1" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["analyze", "nope", "--workers", "2"], "checkpoint nope does not exist"),
        (["analyze", "empty", "--workers", "0"],
         "argument --workers: must be at least 1 (as ClusterSettings.workers), got 0"),
        (["analyze", "empty", "--top-k", "0"], "argument --top-k: must be at least 1"),
        (["analyze", "empty", "--pairs", "p.jsonl"], "empty has no config.json"),
        (["evaluate-checkpoints", "empty", "--benchmark", "world"], "empty has no config.json"),
    ],
)  # fmt: skip
def test_flow_commands_refuse_bad_input_before_starting_anything(
    tmp_path, monkeypatch, capsys, argv, expected
):
    """Refused in one line before a Prefect server, an MLflow store or a world is started: the
    working directory holds nothing new afterwards (importing Prefect makes its empty home)."""
    from sparks.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0, err
    assert set(p.name for p in tmp_path.iterdir()) <= {"empty", "prefect-home"}
    assert not [p for p in (tmp_path / "prefect-home").rglob("*") if p.is_file()]  # no database


def test_train_runs_the_dry_runs_checks_before_writing_anything(tmp_path, monkeypatch, capsys):
    """A levels filter no world problem has: `sparks train` used to write config.json, run.json
    and an MLflow run before refusing."""
    import yaml

    from sparks.cli import main

    raw = yaml.safe_load((Path(__file__).parents[1] / "configs" / "demo.yaml").read_text())
    raw["snapshot"]["pairs"]["hard"]["levels"] = [7]
    raw["output_dir"] = str(tmp_path / "out")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "bad.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "levels 7 match no world problem" in err and "nothing was started or written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_a_prefect_server_that_starts_too_slowly_says_what_to_do(world, tmp_path):
    """Under load the temporary Prefect server can miss its start-up timeout; a 1 s timeout makes
    that happen for real here, and the line says how to get past it."""
    import os
    import shutil

    model = shutil.copytree(world.model_dir, tmp_path / "model")  # never the shared world's
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1",
           "PREFECT_HOME": str(tmp_path / "prefect")}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "analyze", str(model), "--pairs",
         str(world.pairs_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    last = done.stderr.strip().splitlines()
    line = next(x for x in last if x.startswith("sparks: error:"))
    assert done.returncode == 2 and "ephemeral Prefect API server" in line, done.stderr[-2000:]
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120" in line and "sparks up" in line


def test_a_user_error_is_one_line_and_debug_shows_its_traceback(tmp_path, capsys):
    from sparks.cli import main

    missing = str(tmp_path / "nowhere")
    assert main(["stop", missing]) == 2
    err = capsys.readouterr().err
    assert err == f"sparks: error: {missing} does not exist: give the output directory of a run\n"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--debug", "stop", missing])
    # the same from a shell, with the environment variable: a traceback, not one line
    done = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "stop", missing],
        capture_output=True, text=True, env={**os.environ, "SPARKS_DEBUG": "1"},
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().endswith("give the output directory of a run")


def test_an_error_that_is_not_the_users_keeps_its_traceback(tmp_path, monkeypatch):
    """A RuntimeError from inside (a torch bug, a broken invariant) is not said as a user error."""
    from sparks.cli import main
    from sparks.errors import UserError
    from sparks.train import writers

    def broken(out, *, grace):
        raise RuntimeError("an invariant broke")

    monkeypatch.setattr(writers, "stop", broken)
    with pytest.raises(RuntimeError, match="an invariant broke"):
        main(["stop", str(tmp_path)])

    def busy(out, *, grace):
        raise UserError("a user error: says what to do")

    monkeypatch.setattr(writers, "stop", busy)
    assert main(["stop", str(tmp_path)]) == 2
