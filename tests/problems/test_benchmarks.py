"""Benchmarks load from local files in the hub datasets' own layouts; nothing is downloaded."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sparks.problems.benchmarks import BenchmarkError, load_benchmark


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_aime24_in_the_huggingfaceh4_layout(tmp_path):
    rows = [
        {
            "id": 60 + i,
            "problem": f"P{i}",
            "solution": "...",
            "answer": f"{i:03d}",
            "url": "u",
            "year": 2024,
        }
        for i in range(30)
    ]
    probs = load_benchmark("aime24", source=_jsonl(tmp_path / "aime.jsonl", rows))
    assert len(probs) == 30 and probs[0] == {"id": "aime24-60", "problem": "P0", "answer": "000"}
    assert (
        probs[25]["answer"] == "025"
    )  # zero-padded strings stay strings; grading compares numbers


def test_amc23_in_the_math_ai_parquet_layout_with_float_answers(tmp_path):
    pd.DataFrame(
        {"question": [f"Q{i}" for i in range(40)], "answer": [27.0, -1.0, 0.5] + [1.0] * 37}
    ).to_parquet(tmp_path / "amc.parquet")
    probs = load_benchmark("amc23", source=tmp_path / "amc.parquet")
    assert len(probs) == 40 and [p["answer"] for p in probs[:3]] == ["27", "-1", "0.5"]
    assert probs[0]["problem"] == "Q0"


def test_math_ai_aime24_layout_takes_the_answer_from_the_boxed_solution(tmp_path):
    rows = [{"problem": "P", "solution": "so \\boxed{\\frac{1}{2}} and finally \\boxed{204}"}]
    assert load_benchmark("aime24", source=_jsonl(tmp_path / "a.jsonl", rows))[0]["answer"] == "204"


def test_qwen_math_evaluation_directory_layout(tmp_path):
    d = tmp_path / "amc23"
    d.mkdir()
    _jsonl(
        d / "test.jsonl", [{"id": 0, "problem": "P", "question": "P", "answer": 3.0, "url": "u"}]
    )
    assert load_benchmark("amc23", source=d) == [{"id": "amc23-0", "problem": "P", "answer": "3"}]


def test_world_benchmark_is_the_test_split(world):
    probs = load_benchmark("world", world=world, limit=5)
    assert [p["answer"] for p in probs] == [t["answer"] for t in world.tasks("test")[:5]]


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("gsm8k", None, "unknown benchmark 'gsm8k': use one of aime24, amc23, world"),
        ("aime24", None, "cannot load aime24 from the hub .* --benchmark-file aime24=PATH"),
        ("aime24", "empty", "the benchmark is empty"),
        ("aime24", "noanswer", "record 0 has no problem/question or no gradable answer"),
        ("aime24", "csv", "unsupported file type"),
    ],
)
def test_bad_benchmarks_say_what_to_do(tmp_path, name, make, expected):
    source = None
    if make == "empty":
        source = tmp_path / "e.jsonl"
        source.write_text("")
    elif make == "noanswer":
        source = _jsonl(tmp_path / "n.jsonl", [{"problem": "P"}])
    elif make == "csv":
        source = tmp_path / "x.csv"
        source.write_text("a,b\n")
    with pytest.raises(BenchmarkError, match=expected):
        load_benchmark(name, source=source)


def test_boxed_gold_answers_in_real_layouts_are_graded_by_value(tmp_path):
    """Solutions box \\textbf{(073)} or "(C) 12": the gold keeps the value, and a model that
    answers 73 is graded correct; a boxed choice letter alone is refused, naming the record."""
    from sparks.problems.grading import is_correct

    src = _jsonl(
        tmp_path / "aime.jsonl",
        [
            {"problem": "p1", "solution": "so \\boxed{\\textbf{(073)}}"},
            {"problem": "p2", "solution": "thus $\\boxed{\\textbf{(C)}\\ 12}$"},
        ],
    )
    probs = load_benchmark("aime24", source=src)
    assert [p["answer"] for p in probs] == ["073", "12"]
    assert is_correct("The answer is \\boxed{73}.", probs[0]["answer"])
    assert is_correct("\\boxed{12}", probs[1]["answer"])
    assert not is_correct("\\boxed{72}", probs[0]["answer"])
    bad = _jsonl(tmp_path / "bad.jsonl", [{"problem": "p", "solution": "\\boxed{\\textbf{(B)}}"}])
    with pytest.raises(
        BenchmarkError, match="record 0 has no problem/question or no gradable answer"
    ):
        load_benchmark("amc23", source=bad)


def test_prompts_longer_than_the_context_are_skipped_and_counted_before_generation(world):
    """The world model has 512 positions; one AIME-length problem does not fit with max_tokens."""
    from sparks.evaluate.generate import SamplingSpec
    from sparks.evaluate.runner import PromptTooLongError, evaluate_model

    long_problem = {
        "id": "long",
        "problem": "Compute " + " + ".join(["12"] * 200) + ".",
        "answer": "2400",
    }
    problems = {"aime24": world.tasks("test")[:2] + [long_problem]}
    spec = SamplingSpec(n=1, max_tokens=16)
    out = evaluate_model(world.model_dir, problems, spec, backend="transformers")
    m = out["aime24"].metrics
    assert m["problems"] == 2 and m["skipped_overlong"] == 1
    assert "long" not in set(out["aime24"].table.problem_id)
    with pytest.raises(
        PromptTooLongError, match="problem long has a .*-token prompt.*512 positions"
    ):
        evaluate_model(world.model_dir, problems, spec, backend="transformers", overlong="error")
