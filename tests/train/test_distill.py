"""Distillation for real: a teacher's own correct solutions become the student's SFT data."""

from __future__ import annotations

import json

from sparks.config import stage, validate_config
from sparks.models.loading import load_model
from sparks.problems.sources import load_problems
from sparks.run.pipeline import run_training
from sparks.train.trainers import build_trainer


def test_distill_trains_on_the_teachers_correct_solutions(world, tokenizer, tmp_path, monkeypatch):
    # A teacher that knows eight problems: the world model overfitted on them until greedy
    # decoding reproduces their worked solutions.
    records = load_problems("world", world=world, max_samples=8)
    teacher_stage = stage(
        method="sft", max_steps=150, save_steps=150, learning_rate=3e-3, batch_size=8
    )
    trainer = build_trainer(
        teacher_stage, load_model(world.model_dir), tokenizer, records, tmp_path / "t"
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "teacher"))
    tokenizer.save_pretrained(str(tmp_path / "teacher"))

    monkeypatch.setattr("sparks.run.pipeline.world_for", lambda s, cache_root=None: world)
    cfg = validate_config(
        {
            "name": "distill",
            "output_dir": str(tmp_path / "run"),
            "data": {"train": "world", "max_samples": 8},
            "stages": [
                {
                    "method": "distill",
                    "teacher": str(tmp_path / "teacher"),
                    "max_steps": 2,
                    "save_steps": 2,
                    "batch_size": 4,
                }
            ],
            "snapshot": {"steps": 1, "top_k": 30, "n_pairs": 4, "batch_size": 4},
            "evaluation": {
                "enabled": False,
                "temperature": 0.0,
                "max_tokens": 64,
                "backend": "transformers",
            },
            "tracking": {"mlflow_uri": f"sqlite:///{tmp_path}/m.db", "experiment": "distill"},
        }
    )
    summary = run_training(cfg)
    kept = [
        json.loads(line)
        for line in (tmp_path / "run" / "stage0-distill" / "teacher_solutions.jsonl")
        .read_text()
        .splitlines()
    ]
    assert len(kept) >= 4, "the teacher solves most of the problems it was trained on"
    by_id = {r["id"]: r for r in records}
    for r in kept:  # teacher-written, and graded correct against the gold answer
        assert f"\\boxed{{{r['answer']}}}" in r["solution"]
        assert r["answer"] == by_id[r["id"]]["answer"]
    assert (
        tmp_path / "run" / "stage0-distill" / "checkpoint-2" / "circuit" / "snapshot.json"
    ).is_file()
    assert (tmp_path / "run" / "stage0-distill" / "final" / "model.safetensors").is_file()
    assert summary["saves"] == 2  # base + one save
