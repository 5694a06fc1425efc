"""The benchmark scripts the docs quote run, from their command lines, and print their tables
(in this process: a fresh interpreter would spend its time importing torch)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(monkeypatch, capsys, script: str, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / script), run_name="__main__")
    return capsys.readouterr().out


def test_ig_steps_prints_every_rule_and_the_auto_rows(world, monkeypatch, capsys):
    out = _run(
        monkeypatch, capsys,
        "benchmarks/ig_steps.py", f"world={world.model_dir}", "--pairs", str(world.pairs_path),
        "--steps", "3", "--rules", "midpoint", "--n-pairs", "2", "--top-k", "20",
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| world |")]
    assert any("left (reference) | 100 |" in r for r in rows)
    assert any("| midpoint | 3 |" in r for r in rows)
    auto = [r for r in rows if "midpoint auto (tried 3/9" in r]
    assert len(auto) == 1 and "pairs ended:" in auto[0] and "points per pair" in auto[0]


def test_snapshot_sets_times_a_runs_saves_before_and_after(world, tmp_path, monkeypatch, capsys):
    """On a run directory (its pair sets and a stage's checkpoints), one row per save and set and
    the totals per set; both ways reach the tolerance."""
    run = tmp_path / "run"
    (run / "stage0-sft").mkdir(parents=True)
    (run / "stage0-sft" / "checkpoint-2").symlink_to(world.model_dir)
    lines = world.pairs_path.read_text().splitlines()
    (run / "pairs.jsonl").write_text("\n".join(lines[:4]) + "\n")
    (run / "pairs-other.jsonl").write_text("\n".join(lines[4:8]) + "\n")
    out = _run(
        monkeypatch,
        capsys,
        "benchmarks/snapshot_sets.py",
        str(run),
        "--n-pairs",
        "4",
        "--top-k",
        "20",
    )
    rows = [line for line in out.splitlines() if line.startswith("| stage0-sft/checkpoint-2 |")]
    assert [r.split(" | ")[1] for r in rows] == ["all", "other"]
    totals = [line for line in out.splitlines() if line.startswith(("| all |", "| other |"))]
    assert len(totals) == 2 and all(line.rstrip(" |").endswith("x") for line in totals)
