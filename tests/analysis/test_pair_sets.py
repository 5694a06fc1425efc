"""Task-specific circuits for real: a run measures every save on two named pair sets (the world's
easy and hard problems), each set's circuit lands in its own snapshot, ledger rows (`set`) and
MLflow keys (`head/<set>/L*H*`), and `sparks compare` shows the heads specific to each set and
the shared ones, with their stability, a figure and a head set per set."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sparks.circuits.snapshot import read_snapshot
from sparks.config import CompareConfig, ConfigError, validate_config

SETS = {
    "easy": {"mode": "numbers", "sources": ["world"], "levels": [1], "n": 8},
    "hard": {"mode": "numbers", "sources": ["world"], "levels": [3], "n": 8},
}


def _run_two_sets(world, tmp, mode: str = "inline"):
    from sparks.run.pipeline import run_training

    spec = world.spec()
    cfg = validate_config(
        {
            "name": "sets",
            "output_dir": str(tmp / "run"),
            "world": {k: spec[k] for k in ("seed", "n_train", "n_test", "n_pairs")},
            "stages": [
                {"method": "sft", "max_steps": 4, "save_steps": 2, "learning_rate": 3e-3,
                 "batch_size": 8},
            ],
            "snapshot": {"steps": 2, "top_k": 40, "n_pairs": 8, "batch_size": 8, "pairs": SETS,
                         "mode": mode},
            "evaluation": {"enabled": False},
            "tracking": {"mlflow_uri": f"sqlite:///{tmp}/m.db", "experiment": "sets"},
        }
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sparks.run.pipeline.world_for", lambda s, cache_root=None: world)
        summary = run_training(cfg)
    return cfg, summary, tmp


@pytest.fixture(scope="module")
def two_sets(world, tmp_path_factory):
    return _run_two_sets(world, tmp_path_factory.mktemp("sets"))


@pytest.mark.slow  # a snapshot process per save: a launch, not a unit (30 s of the fast lane)
def test_several_sets_in_process_mode_share_one_process_per_save(two_sets, world, tmp_path):
    """Each save's sets come from one snapshot process (one model load), equal to the inline
    run's snapshots of the same checkpoints, and their time is counted per set."""
    inline_cfg, _, _ = two_sets
    cfg, summary, _ = _run_two_sets(world, tmp_path, mode="process")
    for save in ("stage0-sft/checkpoint-2", "stage0-sft/checkpoint-4"):
        for sub, name in (("circuit", "easy"), ("circuit-hard", "hard")):
            got = read_snapshot(Path(cfg.output_dir) / save / sub)
            want = read_snapshot(Path(inline_cfg.output_dir) / save / sub)
            assert got.settings["pairs"]["set"] == name
            assert got.heads == want.heads and got.m_corrupt == pytest.approx(want.m_corrupt)
    ledger = pd.read_parquet(Path(cfg.output_dir) / "ledger.parquet")
    assert set(ledger.groupby("set").step.unique().map(tuple)) == {(0, 2, 4)}
    by_set = summary["snapshot_seconds_by_set"]
    assert set(by_set) == {"easy", "hard"} and all(v > 0 for v in by_set.values())
    assert summary["snapshot_seconds"] == pytest.approx(sum(by_set.values()), abs=0.2)
    recorded = summary["record_seconds_by_set"]  # ledger, MLflow and figures, per set
    assert set(recorded) == {"easy", "hard"} and all(v > 0 for v in recorded.values())
    assert summary["record_seconds"] == pytest.approx(sum(recorded.values()), abs=0.2)


def test_every_save_gets_one_circuit_per_set_in_files_ledger_and_mlflow(two_sets):
    cfg, summary, tmp = two_sets
    out = Path(cfg.output_dir)
    assert (out / "pairs.jsonl").is_file() and (out / "pairs-hard.jsonl").is_file()
    prints = set()
    for save in ("base", "stage0-sft/checkpoint-2", "stage0-sft/checkpoint-4"):
        easy, hard = (
            read_snapshot(out / save / "circuit"),
            read_snapshot(out / save / "circuit-hard"),
        )
        assert easy.settings["metric"] == hard.settings["metric"] == "kl"  # numbers pairs
        assert easy.m_corrupt != hard.m_corrupt  # measured on other inputs
        assert easy.fingerprint == hard.fingerprint  # one save's weights, hashed once
        prints.add(easy.fingerprint)
    assert len(prints) == 3  # and another save's are not taken for them
    assert (out / "pairs.jsonl").read_text() != (out / "pairs-hard.jsonl").read_text()
    ledger = pd.read_parquet(out / "ledger.parquet")
    assert ledger["set"].drop_duplicates().tolist() == ["easy", "hard"]  # the primary first
    assert set(ledger.groupby("set").step.unique().map(tuple)) == {(0, 2, 4)}
    assert summary["saves"] == 3  # the summary speaks of the primary set
    client = MlflowClient(f"sqlite:///{tmp}/m.db")
    rid = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    keys = set(client.get_run(rid).data.metrics)
    # the primary set (easy) once, under circuit/* and head/L*H*; the other under its name
    assert {"circuit/heads", "circuit/hard/heads"} <= keys
    assert not [k for k in keys if "/easy/" in k], "the primary set's series logged twice"
    assert client.get_run(rid).data.tags["sparks.primary_pair_set"] == "easy"
    for prefix, key in (("head/L", "circuit/heads"), ("head/hard/L", "circuit/hard/heads")):
        assert len({k for k in keys if k.startswith(prefix)}) == 16  # 4 layers x 4 heads
        assert sorted(m.step for m in client.get_metric_history(rid, key)) == [0, 2, 4]


def test_compare_shows_set_specific_and_shared_heads_with_stability(two_sets, tmp_path):
    from sparks.analysis.compare import run_compare

    cfg, _, tmp = two_sets
    result = run_compare(
        CompareConfig(
            name="sets", runs=[cfg.output_dir], output_dir=str(tmp_path / "c"),
            tracking={"mlflow_uri": f"sqlite:///{tmp}/m.db", "experiment": "sets-compare"},
        )
    )  # fmt: skip
    report = Path(result["report"]).parent
    table = pd.read_csv(report / "tables" / "pair_sets.csv")
    ledger = pd.read_parquet(Path(cfg.output_dir) / "ledger.parquet")
    last = ledger[ledger.step == 4]
    easy = set(last[(last.set == "easy") & last.in_circuit]["head"])
    hard = set(last[(last.set == "hard") & last.in_circuit]["head"])
    got = table.groupby("status")["head"].apply(set).to_dict()
    expected = {"shared": easy & hard, "only easy": easy - hard, "only hard": hard - easy}
    assert got == {k: v for k, v in expected.items() if v}
    assert table.stability.between(0, 1).all() and (table.saves == 2).all()
    page = (report / "report.html").read_text()
    assert "Task-specific circuits (pair sets)" in page and 'alt="sets sets.sft"' in page
    assert result["pair_sets"]["sets.sft"] == {k: sorted(v) for k, v in got.items()}
    assert (report / "figures" / "sets-sets.sft.png").stat().st_size > 5_000
    sets = json.loads((report / "head_sets.json").read_text())
    for name, heads in (("easy", easy - hard), ("hard", hard - easy)):
        if heads:
            assert set(sets[f"sets.sft/{name}-specific"]["heads"]) == heads


def test_pair_sets_are_validated_in_one_line():
    with pytest.raises(ConfigError, match="pair set name 'a b'"):
        validate_config({"snapshot": {"pairs": {"a b": {"mode": "numbers"}}}})
    with pytest.raises(ConfigError, match=r"numbers pairs \(snapshot.pairs.hard\) do not have"):
        validate_config(
            {
                "snapshot": {
                    "metric": "logit_diff",
                    "pairs": {"all": "p.jsonl", "hard": SETS["hard"]},
                }
            }
        )
    one = validate_config({"snapshot": {"pairs": "p.jsonl"}}).snapshot
    assert list(one.pair_sets()) == [""] and one.pairs.file == "p.jsonl"  # the old form
