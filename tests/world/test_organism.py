"""The world's model organism: a pretrained base that post-training turns into a solver.

The base is shipped (sparks/world/bases/) and must be what the code would build; pretraining is
deterministic; and a short SFT of the base lifts pass@1 on held-out problems by a margin, with a
paired test over the same problems (a statistical claim, not a single lucky number).
"""

from __future__ import annotations

import json

import pytest

from sparks.world.build import WorldSpec
from sparks.world.pretrain import (
    MANIFEST,
    SHIPPED,
    PretrainSpec,
    corpus_fingerprint,
    pretrain,
)
from sparks.world.tasks import MAX_TEST, PLAIN_PREFIX, generate_tasks, pretrain_documents


def test_the_default_world_uses_the_shipped_base_and_it_is_current(world):
    spec = WorldSpec()
    manifest = json.loads((SHIPPED / spec.base_key / MANIFEST).read_text())
    # the corpus the code writes now is the one the shipped weights were trained on
    assert manifest["corpus"] == corpus_fingerprint(spec.seed)
    assert manifest["pretrain"] == spec.to_dict()["pretrain"]
    assert manifest["training"]["loss_last"] < 0.7 < manifest["training"]["loss_first"]
    # the base knows the steps in its own plain format: every one-step problem right
    assert manifest["plain_skill"]["level 1"] >= 0.9
    built = json.loads((world.root / "world.json").read_text())["base"]
    assert built["key"] == spec.base_key, "the test world is built on the shipped base"


def test_the_base_corpus_is_plain_text_and_never_shows_a_test_problem():
    docs = pretrain_documents(3000, seed=0)
    assert not any("\\boxed" in d or "<|im_start|>" in d for d in docs)
    test = [t.problem for t in generate_tasks(MAX_TEST, seed=0, split="test")]
    solutions = [d for d in docs if PLAIN_PREFIX in d]
    assert len(solutions) > 2000
    assert not [p for p in test if any(p in d for d in solutions)]


def test_pretraining_is_deterministic_by_seed(tokenizer):
    import torch

    from sparks.world.model import TinyModelSpec, build_model

    spec = PretrainSpec(steps=4, batch_size=4, seq_len=32, warmup=2, documents=200)
    runs = []
    for seed in (0, 0, 1):
        model = build_model(TinyModelSpec(layers=2, heads=2), tokenizer, seed=seed)
        log = pretrain(model, tokenizer, spec, seed=seed, progress=False)
        runs.append((log, model.state_dict()))
    (log_a, a), (log_b, b), (log_c, c) = runs
    assert log_a == log_b and log_a["loss_last"] < log_a["loss_first"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
def test_sft_lifts_pass_at_1_over_the_base_with_a_paired_test(world, tmp_path):
    """60 SFT steps on the test world's training split, then base and SFT on the same 60 held-out
    problems (4 samples each): pass@1 rises by at least 0.25 with paired Wilcoxon p < 0.001."""
    from sparks.config import stage as make_stage
    from sparks.evaluate.generate import SamplingSpec
    from sparks.evaluate.metrics import paired_p
    from sparks.evaluate.runner import evaluate_model
    from sparks.models.loading import load_model, load_tokenizer
    from sparks.problems.sources import load_problems
    from sparks.train.trainers import build_trainer

    stage = make_stage(method="sft", max_steps=60, save_steps=60, learning_rate=1e-3, batch_size=16)
    model, tok = load_model(world.model_dir, device="cpu"), load_tokenizer(world.model_dir)
    trainer = build_trainer(
        stage, model, tok, load_problems("world", world=world), tmp_path / "sft"
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "sft-final"))
    tok.save_pretrained(str(tmp_path / "sft-final"))
    problems = {"world": world.tasks("test")}
    spec = SamplingSpec(n=4, temperature=0.6, max_tokens=64, seed=0)
    rates = {}
    for name, d in (("base", world.model_dir), ("sft", tmp_path / "sft-final")):
        table = evaluate_model(d, problems, spec, backend="transformers")["world"].table
        rates[name] = table.groupby("problem_id", sort=True)["correct"].mean()
    base, sft = rates["base"], rates["sft"].reindex(rates["base"].index)
    assert sft.mean() - base.mean() >= 0.25, (base.mean(), sft.mean())
    assert paired_p(sft.to_numpy(), base.to_numpy()) < 0.001
