"""Every shipped config loads and passes `sparks run --dry-run` offline; a broken one is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparks.config import load_config
from sparks.run.plan import dry_run

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_the_papers_runs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {
        "qwen2.5-math-1.5b-grpo-openr1",
        "qwen2.5-math-1.5b-grpo-gsm8k",
        "qwen2.5-math-1.5b-sft-openr1",
        "qwen2.5-math-1.5b-distill-r1",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_passes_its_dry_run(path):
    cfg = load_config(path)
    plan = dry_run(cfg)
    assert not plan.problems, plan.problems
    text = plan.text()
    saves = sum(s.max_steps // s.save_steps for s in cfg.stages)
    assert f"{saves} saves" in text and "snapshots (base included)" in text
    if cfg.model.path != "world":  # real models: bf16, hub ids kept, memory estimated per part
        assert cfg.model.dtype == "bfloat16" and cfg.model.path.startswith("Qwen/")
        assert cfg.evaluation.benchmarks == ["aime24", "amc23"]
        assert all(s.save_steps == 100 for s in cfg.stages)
        for part in ("train stage0", "snapshot (1 pair x 1 step per pass)", "evaluation weights"):
            line = next(ln for ln in text.splitlines() if part in ln)
            assert float(line.split()[-2]) < 80, line  # fits one 80 GB GPU
    # disk per save and for the run under the retention settings, against the free space
    assert "  per save: weights " in text and " + optimizer state " in text
    assert f"free at {cfg.output_dir}: " in text and ", at the peak " in text


ABLATIONS = sorted((ROOT / "configs" / "ablation").glob("*.yaml"))


@pytest.mark.parametrize("path", ABLATIONS, ids=[p.stem for p in ABLATIONS])
def test_every_shipped_ablation_study_config_is_valid_and_sweeps_its_heads(path):
    """The paper's sweeps: a run's emergent heads over [0, 0.5, (1), 1.5, 2], a think-off model's
    compensatory heads scaled down; each names where its heads come from."""
    from sparks.config import AblationConfig

    cfg = load_config(path, model=AblationConfig)
    assert cfg.heads_from and not cfg.heads and len(cfg.scales) >= 3
    assert cfg.evaluation.benchmarks == ["aime24", "amc23"] and cfg.evaluation.n == 16
    if cfg.enable_thinking is False:
        assert cfg.head_set == "think/compensatory" and max(cfg.scales) < 1
    else:
        assert {0.0, 0.5, 1.5, 2.0} <= set(cfg.scales)


def test_dry_run_cli_prints_the_plan_and_refuses_a_missing_model(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparks.cli",
            "run",
            "configs/qwen2.5-math-1.5b-grpo-gsm8k.yaml",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "stage0 grpo: steps 1-1000" in done.stdout and "peak GPU memory" in done.stdout
    raw = yaml.safe_load(Path("configs/qwen2.5-math-1.5b-grpo-gsm8k.yaml").read_text())
    raw["model"]["path"] = str(tmp_path / "no-such-model")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "run", str(bad), "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "would stop this run" in done.stderr and "does not exist" in done.stderr
    assert not Path(raw["output_dir"]).exists()  # a dry run writes nothing


def test_the_think_on_off_config_is_shipped_and_fits_one_gpu():
    """configs/compare/qwen3-8b-think.yaml: the paper's Qwen3-8B case, runnable unchanged."""
    from sparks.config import CompareConfig, RunConfig
    from sparks.models.shapes import SHAPES
    from sparks.run.plan import estimate_memory

    cfg = load_config("configs/compare/qwen3-8b-think.yaml", model=CompareConfig)
    t = cfg.think
    assert t.model == "Qwen/Qwen3-8B" and t.dtype == "bfloat16"
    assert (
        t.evaluation.benchmarks == ["aime24", "amc23"]
        and t.pairs.sources == t.evaluation.benchmarks
    )
    as_run = RunConfig.model_validate(
        {"model": {"path": t.model, "dtype": t.dtype}, "snapshot": t.snapshot.model_dump()}
    )
    est = estimate_memory(as_run, SHAPES["Qwen/Qwen3-8B"], pair_tokens=256)
    snapshot = next(v for k, v in est.items() if k.startswith("snapshot (1 pair"))
    assert snapshot < 80, est  # one pair and one IG step per pass fit one 80 GB GPU


def _launch(tmp_path, launch: dict | str, processes: int = 2):
    from sparks.config import validate_config

    path = launch
    if isinstance(launch, dict):
        path = tmp_path / "launch.yaml"
        path.write_text(yaml.safe_dump(launch))
    cfg = validate_config({"distributed": {"processes": processes, "launch_config": str(path)}})
    return dry_run(cfg)


def test_the_dry_run_says_who_does_what_on_several_processes(tmp_path):
    plan = _launch(tmp_path, "configs/accelerate/multi_gpu.yaml")
    assert not plan.problems
    text = plan.text()
    assert "processes: 2 (accelerate launch, multi_gpu.yaml" in text
    assert "every rank trains; rank 0 prepares the inputs" in text
    assert "rank 0 snapshots each save" in text and "waits at most 60 min" in text
    fsdp = _launch(tmp_path, "configs/accelerate/fsdp.yaml").text()
    assert "every rank gathers the full weights" in fsdp
    assert "accelerate ignores FSDP on a CPU" in fsdp  # said, not silently plain DDP


@pytest.mark.parametrize(
    "launch, expected",
    [
        ("configs/accelerate/deepspeed_zero3.yaml", "needs DeepSpeed, which is not installed"),
        (
            {"distributed_type": "MULTI_CPU", "use_cpu": True},
            "use_cpu: true, which makes accelerate start ONE process",
        ),
        (
            "configs/accelerate/nope.yaml",
            "distributed.launch_config configs/accelerate/nope.yaml not found",
        ),
    ],
    ids=["deepspeed-missing", "use-cpu-one-process", "missing-file"],
)
def test_a_launch_that_cannot_start_here_is_refused(tmp_path, launch, expected):
    plan = _launch(tmp_path, launch)
    assert len(plan.problems) == 1 and expected in plan.problems[0], plan.problems


def test_the_dry_run_counts_the_pairs_a_file_mode_set_really_has(tmp_path):
    """A world of 32 pairs is 32 pairs (the set's `n` is for built pairs), 16 per snapshot."""
    raw = yaml.safe_load(Path("configs/demo.yaml").read_text())
    raw["world"]["n_pairs"] = 32
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    lines = [str(line) for line in dry_run(load_config(tmp_path / "c.yaml")).lines]
    primary = next(line for line in lines if "(primary circuit)" in line)
    assert "file, 32 pairs (16 per snapshot)" in primary, primary


def test_a_levels_filter_that_matches_no_world_problem_stops_the_dry_run(tmp_path):
    raw = yaml.safe_load(Path("configs/demo.yaml").read_text())
    raw["snapshot"]["pairs"]["hard"]["levels"] = [7]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    plan = dry_run(load_config(tmp_path / "c.yaml"))
    assert any("snapshot.pairs.hard: levels 7 match no world problem (its levels are 1, 2, 3)" in p
               for p in plan.problems), plan.problems  # fmt: skip


def test_more_ranks_than_cores_on_a_cpu_is_refused(tmp_path):
    import os

    plan = _launch(tmp_path, "configs/accelerate/multi_gpu.yaml", processes=1000)
    expected = f"distributed.processes 1000 is more than the {os.cpu_count()} CPU cores here"
    assert any(expected in p for p in plan.problems), plan.problems


def test_a_phase_over_the_gpu_budget_stops_the_dry_run_and_a_missing_gpu_is_noted(capsys):
    """`<- over` is a problem (exit 2), not a remark under "in order"; a 1.5B model on a machine
    without a GPU gets a one-line note; distill's plan lists the teacher's generation first."""
    from sparks.cli import main
    from sparks.run.plan import _has_gpu

    path = ROOT / "configs" / "qwen2.5-math-1.5b-grpo-gsm8k.yaml"
    small = dry_run(load_config(path), gpu_gb=2)
    assert any("over the 2 GB GPU assumed" in p for p in small.problems), small.problems
    assert main(["run", str(path), "--dry-run", "--gpu-memory", "2"]) == 2
    assert "over the 2 GB GPU assumed" in capsys.readouterr().err
    fits = dry_run(load_config(path))
    assert fits.problems == []
    noted = [ln for ln in fits.lines if ln.startswith("note: this config expects a GPU")]
    assert noted == ([] if _has_gpu() else [noted[0]]) and (_has_gpu() or "1.5B" in noted[0])
    distill = dry_run(load_config(ROOT / "configs" / "qwen2.5-math-1.5b-distill-r1.yaml")).text()
    assert "before it: the teacher deepseek-ai/" in distill
    assert " 1 evaluations" not in distill


def test_the_dry_run_estimates_wall_time_where_throughput_was_measured():
    """The demo's own config against the demo's measured flow (377.9 s on 2026-12-04): the
    estimate is within a factor of two; a shape never measured gets no number, and says so."""
    demo = dry_run(load_config(ROOT / "configs" / "demo.yaml"))
    line = next(ln for ln in demo.lines if ln.startswith("wall time estimates"))
    minutes = float(line.rsplit("~", 1)[1].split()[0])
    assert 377.9 / 60 / 2 <= minutes <= 377.9 / 60 * 2, line
    assert any(ln.strip().startswith("snapshots: 13 saves x 3 set(s)") for ln in demo.lines)
    real = dry_run(load_config(ROOT / "configs" / "qwen2.5-math-1.5b-sft-openr1.yaml"))
    assert any(ln.startswith("wall time: no throughput measured") for ln in real.lines)
