"""`benchmarks/gpu_check.py --cpu-smoke`: the prepared GPU check runs end to end at tiny shapes
(every part: snapshots beside their floor, vLLM against transformers, GRPO with snapshots), so
the script a GPU session runs cannot rot. Its figures here say only that each part ran."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_every_part_at_tiny_shapes(world, tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-smoke",
         "--world", str(world.root), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["smoke"] and [r["part"] for r in report["rows"]] == [
        "snapshot",
        "generate",
        "grpo",
    ]
    snaps = report["rows"][0]["result"]["rows"]
    assert [r["shape"] for r in snaps] == ["Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen3-8B"]
    for r in snaps:
        assert r["finite"] and r["snapshot_seconds"] > 0 and r["floor_seconds"] > 0
        assert r["pass_pairs"] >= 1 and r["pass_steps"] >= 1 and r["estimate_gb"] > 0
    gen = report["rows"][1]["result"]
    assert gen["vllm_tokens"] > 0 and gen["transformers_tokens"] > 0 and gen["ratio"] > 0
    grpo = report["rows"][2]["result"]
    assert 0 < grpo["snapshot_s"] < grpo["wall_s"] and grpo["saves"] == 1
    assert math.isfinite(grpo["estimate_gb"])
    table = done.stdout[done.stdout.index("| check |") :].strip().splitlines()
    assert len(table) == 2 + 4 and not any("FAILED" in line for line in table)
