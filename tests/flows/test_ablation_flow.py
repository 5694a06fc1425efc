"""The `ablation-study` flow for real: edited checkpoints, evaluations, a side-by-side MLflow run."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from sparks.config import AblationConfig, ConfigError, validate_config


def _cfg(tmp_path, world, **kw) -> AblationConfig:
    return AblationConfig.model_validate(
        {
            "model": str(world.model_dir),
            "scales": [0.0, 0.5],
            "output_dir": str(tmp_path / "abl"),
            "evaluation": {
                "benchmarks": ["world"],
                "sources": {"world": str(world.tasks_path("test"))},
                "limit": 4,
                "n": 2,
                "max_tokens": 8,
                "backend": "transformers",
            },
            "tracking": {"mlflow_uri": f"sqlite:///{tmp_path}/m.db", "experiment": "abl"},
            **kw,
        }
    )


def test_ablation_study_compares_variants_side_by_side(prefect_server, world, tmp_path):
    from flows.ablation import ablation_study

    result = ablation_study(_cfg(tmp_path, world, heads=["L1H0", "L3H2"]))
    assert result["heads"] == ["L1H0", "L3H2"]
    assert set(result["results"]) == {"baseline", "scale_0", "scale_0.5"}
    assert (tmp_path / "abl" / "scale_0" / "model" / "sparks_intervention.json").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    run = client.search_runs([client.get_experiment_by_name("abl").experiment_id])[0]
    for v in ("baseline", "scale_0", "scale_0.5"):
        assert f"eval/world/pass_at_1/{v}" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "comparison.json",
        "comparison.png",
    }
    assert run.data.params["heads"] == "L1H0,L3H2"


def test_heads_from_a_snapshot(prefect_server, world, tmp_path, batches):
    from transformers import AutoModelForCausalLM

    from flows.ablation import ablation_study
    from sparks.circuits.snapshot import build_snapshot, write_snapshot

    snap = build_snapshot(
        AutoModelForCausalLM.from_pretrained(str(world.model_dir)),
        batches[:1],
        steps=1,
        top_k=20,
        n_boot=2,
    )
    write_snapshot(snap, tmp_path / "snap")
    result = ablation_study(_cfg(tmp_path, world, heads_from=str(tmp_path / "snap"), scales=[0.0]))
    assert result["heads"] == snap.heads


def test_ablation_config_needs_exactly_one_head_source(world, tmp_path):
    with pytest.raises(ValueError, match="exactly one of heads"):
        _cfg(tmp_path, world)
    with pytest.raises(ConfigError, match=r"abl.yaml: scales: List should have at least 1 item"):
        validate_config(
            {"model": "m", "heads": ["L0H0"], "scales": []}, source="abl.yaml", model=AblationConfig
        )
