"""The paper's findings table: verdicts computed from a run's files, on hand-made runs whose answer
is known and on a real trained run's layout."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sparks.analysis import findings


def _eval(d, rates: dict[str, float], n: int = 4):
    """An evaluation directory whose problems have these pass rates (n samples each)."""
    d.mkdir(parents=True)
    rows = [
        {"problem_id": f"world-{pid}", "sample": j, "correct": j < round(r * n)}
        for pid, r in rates.items()
        for j in range(n)
    ]
    pd.DataFrame(rows).to_parquet(d / "world.parquet")
    (d / "metrics.json").write_text("{}")


def _run(tmp_path, base: float, sft: float, grpo: float, rewards: list[float]):
    """A two-stage run: 90 problems at levels 1-3 (the last 10 of level 3 are products)."""
    problems = [
        {"id": f"p{i:03d}", "level": 1 + i // 30, "family": "product" if i >= 80 else "step"}
        for i in range(90)
    ]

    def rates(mean: float) -> dict[str, float]:
        # the first share of each level's problems solved, a larger share on easier levels; the
        # products never
        share = {lv: min(1.0, mean * (1.5 - 0.35 * lv)) for lv in (1, 2, 3)}
        return {
            p["id"]: 0.0 if p["family"] == "product"
            else float(i % 30 < round(share[p["level"]] * 30))
            for i, p in enumerate(problems)
        }  # fmt: skip

    run = tmp_path / "run"
    _eval(run / "base" / "eval", rates(base))
    _eval(run / "stage0-sft" / "checkpoint-40" / "eval", rates(sft))
    _eval(run / "stage1-grpo" / "checkpoint-8" / "eval", rates(grpo))
    log = [{"step": i + 1, "rewards/correctness_reward/mean": r} for i, r in enumerate(rewards)]
    (run / "stage1-grpo" / "checkpoint-8" / "trainer_state.json").write_text(
        json.dumps({"log_history": log})
    )
    return run, problems


def test_an_organism_that_learns_is_reproduced_row_by_row(tmp_path):
    run, problems = _run(tmp_path, base=0.0, sft=0.65, grpo=0.9, rewards=[0.4] * 4 + [0.8] * 4)
    rows = {r.finding.split(" ")[0]: r for r in findings.measure(run, problems)}
    assert rows["Post-training"].verdict == "reproduced"
    assert "pass@1 base 0.000" in rows["Post-training"].measured
    assert rows["Levels"].verdict == "reproduced"
    assert "two-digit products) after grpo: 0.000 (10 problems)" in rows["Levels"].measured
    assert (
        rows["GRPO"].verdict == "reproduced"
        and "first quarter 0.400 -> last quarter 0.800" in rows["GRPO"].measured
    )
    md = findings.to_markdown(list(rows.values()))
    assert md.count("\n") == 2 + len(rows) and "| reproduced |" in md


def test_a_grpo_that_does_not_help_is_not_reproduced(tmp_path):
    run, problems = _run(tmp_path, base=0.0, sft=0.65, grpo=0.6, rewards=[0.6] * 8)
    grpo = next(r for r in findings.measure(run, problems) if r.finding.startswith("GRPO"))
    assert grpo.verdict == "not reproduced"


def test_a_competent_base_fails_the_unlock_target(tmp_path):
    run, problems = _run(tmp_path, base=0.5, sft=0.7, grpo=0.7, rewards=[0.5] * 8)
    first = findings.measure(run, problems)[0]
    assert first.finding.startswith("Post-training") and first.verdict == "not reproduced"


def test_the_study_rows_hold_the_ablation_to_the_random_head_control():
    study = {
        "heads": ["L0H0"],
        "flips": [
            {"variant": "scale_0", "solved->failed": 40, "failed->solved": 0, "p_value": 1e-12},
            {"variant": "scale_2", "solved->failed": 5, "failed->solved": 9, "p_value": 0.4},
        ],
        "pass_by_bucket": [
            {"variant": v, "bucket": f"level {lv}", "pass@1": p, "ci_low": p - 0.1, "ci_high": p + 0.1}
            for v, ps in (("baseline", (0.9, 0.5)), ("scale_2", (0.8, 0.6)))
            for lv, p in zip((1, 3), ps, strict=True)
        ],
        "control": [
            {"scale": 0.0, "baseline": 0.7, "studied": 0.1, "studied_ci_low": 0.05,
             "studied_ci_high": 0.15, "control": 0.6, "control_ci_low": 0.5, "control_ci_high": 0.7,
             "control_draws": "0.6, 0.6, 0.6", "draws": 3, "pool": "outside the circuit",
             "p_value": 1e-9}
        ],
    }  # fmt: skip
    rows = findings._study_findings(study)
    assert [r.verdict for r in rows] == ["reproduced", "reproduced"]
    study["control"][0] |= {"control": 0.05, "p_value": 0.3}  # random heads hurt as much
    assert findings._study_findings(study)[0].verdict == "not reproduced"


@pytest.mark.slow
def test_findings_read_a_real_runs_files(trained_run, world, tmp_path):
    rows = findings.measure(trained_run.cfg.output_dir, world.tasks("test"))
    names = [r.finding for r in rows]
    assert any(n.startswith("Post-training") for n in names)
    assert any(n.startswith("The circuits are faithful") for n in names)
    assert any(n.startswith("SFT adds") for n in names) and any(
        n.startswith("GRPO activates") for n in names
    )
    path = findings.write(rows, tmp_path)
    saved = json.loads((tmp_path / "findings.json").read_text())
    assert [r["verdict"] for r in saved] == [r.verdict for r in rows]
    assert path.read_text().startswith("| the paper's finding |")
