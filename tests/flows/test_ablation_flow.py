"""The `ablation-study` flow for real: edited checkpoints, evaluations, a side-by-side MLflow run."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sparks.circuits.spec import SnapshotSpec
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
    from sparks.flows.ablation import ablation_study

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

    from sparks.circuits.snapshot import build_snapshot, write_snapshot
    from sparks.flows.ablation import ablation_study

    snap = build_snapshot(
        AutoModelForCausalLM.from_pretrained(str(world.model_dir)),
        batches[:1],
        SnapshotSpec(steps=1, top_k=20),
        n_boot=2,
    )
    write_snapshot(snap, tmp_path / "snap")
    result = ablation_study(
        _cfg(
            tmp_path, world, heads_from=str(tmp_path / "snap"), scales=[0.0], control="random",
            draws=2, control_seed=3,
        )
    )  # fmt: skip
    assert result["heads"] == snap.heads
    # the random-head control: as many heads, drawn outside the snapshot's circuit, scaled alike
    assert set(result["controls"]) == {"control1_scale_0", "control2_scale_0"}
    for drawn in result["controls"].values():
        assert len(drawn) == len(snap.heads) and not set(drawn) & set(snap.heads)
    for variant, drawn in result["controls"].items():
        marker = tmp_path / "abl" / variant / "model" / "sparks_intervention.json"
        assert json.loads(marker.read_text())["heads"] == drawn
    (row,) = result["study"]["control"]
    assert (row["scale"], row["draws"], row["pool"]) == (0.0, 2, "outside the circuit")
    assert (
        0.0 <= row["p_value"] <= 1.0
        and row["control_ci_low"] <= row["control"] <= row["control_ci_high"]
    )
    study_dir = tmp_path / "abl" / "study"
    table = pd.read_csv(study_dir / "control.csv")
    assert table.loc[0, "studied"] == pytest.approx(row["studied"])
    # the viewer reads the studied heads only; every variant's pass@1 is in the tables
    assert set(pd.read_csv(study_dir / "pass_by_bucket.csv").variant) == {
        "baseline", "scale_0", "control1_scale_0", "control2_scale_0",
    }  # fmt: skip
    assert "control1_scale_0" not in (study_dir / "viewer.html").read_text()
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    run = client.search_runs([client.get_experiment_by_name("abl").experiment_id])[0]
    assert run.data.metrics["study/world/control/scale_0/p_value"] == pytest.approx(row["p_value"])
    assert "eval/world/pass_at_1/control2_scale_0" in run.data.metrics
    assert run.data.params["control"] == "random"


def test_random_head_control_draws_outside_the_circuit_and_refuses_too_few():
    from sparks.studies.control import draw_sets, head_names

    every = head_names(4, 4)
    circuit = {"L0H0", "L1H1", "L2H2", "L3H3", "L0H1", "L1H0"}
    sets, pool = draw_sets(every, ["L0H0", "L1H1"], circuit, draws=5, seed=0)
    assert pool == "outside the circuit" and len({tuple(s) for s in sets}) == 5  # distinct
    assert all(len(s) == 2 and not set(s) & circuit for s in sets)
    assert draw_sets(every, ["L0H0", "L1H1"], circuit, draws=5, seed=0)[0] == sets  # seeded
    # a circuit that leaves too few heads: drawn outside the studied heads, and said so
    sets, pool = draw_sets(every, every[:8], set(every[:12]), draws=2, seed=0)
    assert pool == "outside the studied heads" and all(not set(s) & set(every[:8]) for s in sets)
    with pytest.raises(ValueError, match="needs 10 heads outside the 10 studied ones"):
        draw_sets(every, every[:10], None, draws=1, seed=0)


def test_ablation_config_needs_exactly_one_head_source(world, tmp_path):
    with pytest.raises(ValueError, match="exactly one of heads"):
        _cfg(tmp_path, world)
    with pytest.raises(ConfigError, match=r"abl.yaml: scales: List should have at least 1 item"):
        validate_config(
            {"model": "m", "heads": ["L0H0"], "scales": []}, source="abl.yaml", model=AblationConfig
        )
    with pytest.raises(ConfigError, match=r"control_scales \[2.0\] must be among scales"):
        validate_config(
            {"model": "m", "heads": ["L0H0"], "scales": [0.0], "control": "random",
             "control_scales": [2.0]}, source="abl.yaml", model=AblationConfig,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="draws: Input should be greater than or equal to 1"):
        validate_config(
            {"model": "m", "heads": ["L0H0"], "control": "random", "draws": 0},
            source="abl.yaml", model=AblationConfig,
        )  # fmt: skip


def test_max_heads_keeps_a_runs_strongest_emergent_heads(trained_run):
    import pandas as pd

    from sparks.studies.ablation import circuit_heads, resolve_heads
    from sparks.track.ledger import primary

    run = trained_run.cfg.output_dir
    ledger = primary(pd.read_parquet(f"{run}/ledger.parquet"))
    last = ledger[ledger.step == ledger.step.max()]
    emergent = last[last.emergent]
    assert len(emergent) >= 1, "the shared run has emergent heads at its last save"
    every = resolve_heads(AblationConfig(model="m", heads_from=run))
    assert every == emergent["head"].tolist()
    one = resolve_heads(AblationConfig(model="m", heads_from=run, max_heads=1))
    assert one == [emergent.loc[emergent.score.abs().idxmax(), "head"]]
    assert (
        circuit_heads(AblationConfig(model="m", heads_from=run))
        == set(last.loc[last.in_circuit, "head"])
        >= set(every)
    )
