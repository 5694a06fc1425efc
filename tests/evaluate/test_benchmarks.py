"""Benchmarks load from local files in the hub datasets' own layouts; nothing is downloaded."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sparks.evaluate.benchmarks import BenchmarkError, load_benchmark


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
        ("aime24", "noanswer", "record 0 has no problem/question or no answer"),
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
