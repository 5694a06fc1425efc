"""`sparks/log` without servers: the recorder against a tracker that keeps what it is sent (what a
snapshot, a trainer log and a killed stage's end become, and that nothing is logged twice), and the
sample viewer's page (escaped, the evidence marked)."""

from __future__ import annotations

import json

import pandas as pd

from sparks.circuits.graph import Graph
from sparks.circuits.snapshot import FailedSnapshot
from sparks.log.recorder import Recorder
from sparks.studies.viewer import write_viewer


class KeptTracker:
    """What Recorder needs of a Tracker, keeping every call."""

    def __init__(self):
        self.metrics: list[tuple[dict, int]] = []
        self.tags: dict = {}
        self.artifacts: list = []

    def log_metrics(self, metrics: dict, step: int) -> None:
        self.metrics.append((dict(metrics), step))

    def set_tags(self, tags: dict) -> None:
        self.tags |= tags

    def log_artifact(self, path, artifact_path=None) -> None:
        self.artifacts.append((str(path), artifact_path))

    def log_table(self, records, name) -> None:
        self.artifacts.append((name, "table"))

    def metric_steps(self, key: str) -> set[int]:
        return {step for m, step in self.metrics if key in m}


def test_failed_snapshots_are_logged_once_per_set_under_their_own_keys(tmp_path):
    tracker = KeptTracker()
    rec = Recorder(tracker, tmp_path, "t", sets=["all", "hard"])
    g = Graph(2, 2, 1)
    for name in ("all", "hard", "all"):  # the primary's step 2 arrives twice: logged once
        rec.on_snapshot(2, FailedSnapshot(2, g, "NaN in the metric"), tmp_path / "c", name)
    keys = [sorted(m) for m, _ in tracker.metrics]
    # the primary set once, under circuit/*: never also under circuit/all/*
    assert keys == [["circuit/failed"], ["circuit/hard/failed"]]
    assert tracker.tags == {
        "sparks.snapshot_failed.all.step-2": "NaN in the metric",
        "sparks.snapshot_failed.hard.step-2": "NaN in the metric",
    }
    ledger = pd.read_parquet(tmp_path / "ledger.parquet")
    assert sorted(ledger["set"].unique()) == ["all", "hard"] and ledger.failed.all()


def test_trainer_losses_are_not_logged_again_after_a_resume_and_a_killed_stage_ends(tmp_path):
    tracker = KeptTracker()
    rec = Recorder(tracker, tmp_path, "t")
    rec.on_log({"loss": 2.0, "grad_norm": 1.0}, 1)
    rec.resume([], eval_key=None)  # a rerun reads back what MLflow has
    rec.on_log({"loss": 2.0}, 1)  # the redone step 1: not twice
    rec.on_log({"loss": 1.0}, 2)
    assert [s for m, s in tracker.metrics if "loss" in m] == [1, 2]
    assert rec.curves["loss"] == {1: 2.0, 2: 1.0}
    state = tmp_path / "trainer_state.json"
    log = [{"loss": 3.0, "step": 1}, {"loss": 1.0, "step": 2}]
    state.write_text(json.dumps({"global_step": 2, "total_flos": 5.0, "log_history": log}))
    rec.end_of_stage(state, offset=10)
    rec.end_of_stage(state, offset=10)  # once
    assert tracker.metrics[-1] == ({"total_flos": 5.0, "train_loss": 2.0}, 12)
    assert sum("train_loss" in m for m, _ in tracker.metrics) == 1


def test_the_viewer_escapes_responses_and_marks_the_evidence(tmp_path):
    response = "Let x<y. <script>alert(1)</script> 2+2=5 so \\boxed{5}"
    start = response.index("2+2=5")
    sample = {"problem_id": "p1", "sample": 0, "correct": False, "mode": "arithmetic",
              "answer": "5", "length": 20, "truncated": False, "evidence": "2+2=5",
              "true_value": "4", "mark_start": start, "mark_end": start + 5,
              "response": response, "gold": "4"}  # fmt: skip
    good = sample | {"correct": True, "mode": "correct", "answer": "4", "evidence": "",
                     "true_value": "", "mark_start": 0, "mark_end": 0,
                     "response": "2+2=4 so \\boxed{4}"}  # fmt: skip
    flipped = pd.DataFrame([{"variant": "x0", "benchmark": "world", "problem_id": "p1",
                             "flip": "solved->failed", "bucket": "level 1",
                             "baseline_rate": 1.0, "rate": 0.0}])  # fmt: skip
    tests = pd.DataFrame([{"variant": "x0", "benchmark": "world", "problems": 1,
                           "solved->failed": 1, "failed->solved": 0, "p_value": 1.0}])  # fmt: skip
    page = write_viewer(
        tmp_path / "viewer.html",
        title="study <1>",
        flipped=flipped,
        tests=tests,
        samples={
            "baseline": {"world": pd.DataFrame([good])},
            "x0": {"world": pd.DataFrame([sample])},
        },  # fmt: skip
        problems={"world": [{"id": "p1", "problem": "Compute 2+2 & more."}]},
    ).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<mark>2+2=5</mark>" in page and "true value <code>4</code>" in page
    assert "<title>study &lt;1&gt;</title>" in page and "Compute 2+2 &amp; more." in page
    assert '<span class="mode arithmetic">arithmetic</span>' in page
    assert "baseline 100% &rarr; 0%" in page
