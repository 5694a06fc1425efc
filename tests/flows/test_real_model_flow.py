"""A `post-train` run on a model that is not the world's (another family, its own tokenizer) and
no pairs file: it builds its own pairs, snapshots every save and finishes, never touching the
world."""

from __future__ import annotations

import json

import pytest

from sparks.config import validate_config
from sparks.models.loading import load_tokenizer, tokenizer_fingerprint


@pytest.fixture(scope="module")
def real_run(prefect_server, world, foreign_model, tmp_path_factory):
    from sparks.flows.train import post_train

    tmp = tmp_path_factory.mktemp("real")
    problems = tmp / "problems.jsonl"  # AIME-shaped records standing in for aime24 offline
    problems.write_text(world.tasks_path("test").read_text())
    train = tmp / "train.jsonl"
    train.write_text(world.tasks_path("train").read_text())
    cfg = validate_config(
        {
            "name": "real",
            "output_dir": str(tmp / "out"),
            "model": {"path": str(foreign_model)},
            "data": {"train": str(train), "max_samples": 64},
            "stages": [
                {
                    "method": "sft",
                    "max_steps": 2,
                    "save_steps": 1,
                    "batch_size": 4,
                    "max_length": 128,
                }
            ],
            # no snapshot.pairs: mode auto builds numbers pairs from the evaluation's problems
            "snapshot": {"steps": 2, "top_k": 20, "n_pairs": 6, "batch_size": 6},
            "evaluation": {
                "enabled": False,
                "benchmarks": ["aime24"],
                "sources": {"aime24": str(problems)},
            },
            "tracking": {"mlflow_uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "real"},
        }
    )
    mp = pytest.MonkeyPatch()

    def no_world(*a, **k):
        raise AssertionError("the run touched the embedded world")

    mp.setattr("sparks.run.pipeline.world_for", no_world)
    mp.chdir(tmp)
    try:
        yield cfg, post_train(cfg)
    finally:
        mp.undo()


def test_a_non_world_model_builds_its_pairs_and_snapshots_every_save(real_run, foreign_model):
    cfg, summary = real_run
    out = cfg.output_dir
    pairs = [json.loads(line) for line in open(f"{out}/pairs.jsonl")]
    fp = tokenizer_fingerprint(load_tokenizer(foreign_model))
    assert pairs and all(p["tokenizer"] == fp and p["mode"] == "numbers" for p in pairs)
    assert summary["saves"] == 3  # the base model and both saves
    for d in (
        f"{out}/base/circuit",
        f"{out}/stage0-sft/checkpoint-1/circuit",
        f"{out}/stage0-sft/checkpoint-2/circuit",
    ):
        meta = json.loads(open(f"{d}/snapshot.json").read())
        assert meta["settings"]["metric"] == "kl" and meta["settings"]["n_pairs"] == 6
        assert "failed" not in meta
