"""The `nightly` flow for real, two nights in a row (dates given, as a schedule would): two run
directories, two MLflow runs, and the second night compared with the first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient


def _night_config(tmp: Path, world, uri: str) -> Path:
    spec = world.spec()
    cfg = {
        "name": "night",
        "seed": 1,
        "world": {k: spec[k] for k in ("seed", "n_train", "n_test", "n_pairs")},
        "stages": [
            {"method": "sft", "max_steps": 2, "save_steps": 2, "learning_rate": 3e-3,
             "batch_size": 8},
            {"method": "grpo", "max_steps": 1, "save_steps": 1, "learning_rate": 3e-4,
             "batch_size": 8, "num_generations": 4, "max_completion_length": 12},
        ],
        "snapshot": {"steps": 2, "top_k": 40, "n_pairs": 8, "batch_size": 8},
        "evaluation": {"benchmarks": ["world"], "every": 1, "n": 1, "max_tokens": 8, "limit": 4,
                       "backend": "transformers"},
        "tracking": {"mlflow_uri": uri, "experiment": "nights"},
    }  # fmt: skip
    path = tmp / "night.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_nights_are_two_runs_and_the_second_is_compared_with_the_first(
    prefect_server, world, tmp_path
):
    from flows.nightly import nightly

    uri = f"sqlite:///{tmp_path}/m.db"
    config = _night_config(tmp_path, world, uri)
    root = tmp_path / "nightly"
    first = nightly(str(config), str(root), night="2026-12-03")
    second = nightly(str(config), str(root), night="2026-12-04")
    assert sorted(p.name for p in root.iterdir()) == ["2026-12-03", "2026-12-04"]
    assert first["night"]["previous"] is None and first["night_report"] is None
    change = json.loads((root / "2026-12-04" / "night.json").read_text())
    assert change == second["night"] and change["previous"] == "2026-12-03"
    assert change["step"] == 3 and set(change["pass@1_delta"]) == {"world"}
    assert {"heads_gained", "heads_lost", "reward_delta"} <= set(change)
    assert Path(second["night_report"]).is_file()  # the compare report of the two nights
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("nights").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([exp])}
    assert {"night-2026-12-03", "night-2026-12-04"} <= set(runs)
    two = runs["night-2026-12-04"]
    assert two.info.status == "FINISHED" and two.data.tags["sparks.previous_night"] == "2026-12-03"
    assert two.data.metrics["night/heads_gained"] == len(change["heads_gained"])
    assert two.data.metrics["night/world/pass_at_1_delta"] == change["pass@1_delta"]["world"]
    # a night is a new run: the second trained its own checkpoints, it did not resume the first's
    assert (root / "2026-12-04" / "stage1-grpo" / "checkpoint-1" / "circuit").is_dir()
    with pytest.raises(ValueError, match="give a date as YYYY-MM-DD"):
        nightly(str(config), str(root), night="tonight")
