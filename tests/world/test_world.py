"""The embedded world: tokenizer, tasks, pairs, the tiny model in transformers and in vLLM."""

from __future__ import annotations

import pytest
from math_verify import parse, verify

from sparks.evaluate.generate import SamplingSpec, generate
from sparks.world.build import WorldSpec, build_world
from sparks.world.tasks import TEMPLATES, chat_prompt, generate_splits


def test_tokenizer_round_trips_every_task(world, tokenizer):
    for split in ("train", "test"):
        for t in world.tasks(split):
            for text in (
                t["problem"],
                t["solution"],
                chat_prompt(tokenizer, t["problem"]) + t["solution"],
            ):
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                assert tokenizer.decode(ids) == text


def test_chat_template_marks_the_assistant_turn(tokenizer):
    prompt = chat_prompt(tokenizer, "Compute 1 + 2.")
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id


def test_every_answer_matches_its_solutions_boxed_answer(world):
    tasks = world.tasks("train") + world.tasks("test")
    assert {t["level"] for t in tasks} == {1, 2, 3}
    for t in tasks:
        assert verify(parse(t["answer"]), parse(t["solution"])), t
        assert t["solution"].rstrip(".").endswith(f"\\boxed{{{t['answer']}}}")


def test_wrong_answers_do_not_verify(world):
    for t in world.tasks("test")[:20]:
        assert not verify(parse(str(int(t["answer"]) + 1)), parse(t["solution"]))


def test_splits_are_disjoint_and_deterministic_by_seed():
    a, b = generate_splits(300, 50, seed=3), generate_splits(300, 50, seed=3)
    assert a == b
    assert not {t.problem for t in a["train"]} & {t.problem for t in a["test"]}
    assert generate_splits(300, 50, seed=4)["test"] != a["test"]
    assert len({t.id for t in a["train"]}) == 300


def test_pairs_have_equal_token_length_and_different_answers(world, tokenizer):
    pairs = world.pairs()
    assert len(pairs) == 24
    assert {p["template"] for p in pairs} <= {t.name for t in TEMPLATES}
    for p in pairs:
        clean = tokenizer(p["clean"])["input_ids"]
        corrupt = tokenizer(p["corrupted"])["input_ids"]
        assert len(clean) == len(corrupt)
        assert clean != corrupt
        assert p["clean_answer"] != p["corrupted_answer"]
        first = [
            tokenizer(a, add_special_tokens=False)["input_ids"][0]
            for a in (p["clean_answer"], p["corrupted_answer"])
        ]
        assert first[0] != first[1], "the metric compares the answers' first tokens"
        assert p["clean"].endswith("\\boxed{")


def test_build_reuses_same_spec_and_refuses_a_foreign_directory(world, tmp_path):
    from tests.conftest import TEST_WORLD

    before = (world.model_dir / "model.safetensors").stat().st_mtime_ns
    assert build_world(world.root, TEST_WORLD).root == world.root
    assert (world.model_dir / "model.safetensors").stat().st_mtime_ns == before, (
        "reused, not rebuilt"
    )
    other = tmp_path / "not-a-world"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a world built with these settings"):
        build_world(other, WorldSpec(n_train=10, n_test=5, n_pairs=2))
    assert (other / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-world"], (
        "no temporary directory left behind"
    )


def test_tiny_model_loads_in_transformers_and_generates(world):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(world.model_dir))
    assert (
        cfg.model_type,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    ) == (
        "qwen2",
        4,
        4,
        2,
        32,
    )
    assert cfg.tie_word_embeddings
    result = generate(
        world.model_dir,
        ["Compute 1 + 2.", "Compute 3 + 4."],
        SamplingSpec(n=2, max_tokens=8),
        backend="transformers",
    )
    assert [len(r) for r in result.completions] == [2, 2]
    assert all(0 < c.n_tokens <= 8 for r in result.completions for c in r)
