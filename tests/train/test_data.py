"""The training loaders take the real layouts of GSM8K and OpenR1-Math."""

from __future__ import annotations

import json

from sparks.problems.sources import load_problems


def test_gsm8k_answers_follow_the_hashes(tmp_path):
    src = tmp_path / "gsm8k.jsonl"
    src.write_text(
        json.dumps(
            {
                "question": "Natalia sold 48 clips in April and half as many in May. How many?",
                "answer": "In May she sold 48/2 = <<48/2=24>>24.\n48+24 = <<48+24=72>>72\n#### 1,072",
            }
        )
        + "\n"
    )
    (r,) = load_problems(str(src))
    assert r["answer"] == "1072"
    assert r["solution"].endswith("\\boxed{1072}.") and "####" not in r["solution"]


def test_openr1_takes_the_first_correct_generation_as_the_solution(tmp_path):
    rows = [
        {
            "problem": "What is 2+3?",
            "answer": "5",
            "solution": "2+3=5",
            "uuid": "a",
            "generations": ["<think>wrong</think> \\boxed{6}", "<think>ok</think> \\boxed{5}"],
            "correctness_math_verify": [False, True],
        },
        {
            "problem": "What is 1+1?",
            "answer": "2",
            "solution": "1+1=2",
            "uuid": "b",
            "generations": ["\\boxed{3}"],
            "correctness_math_verify": [False],
        },
    ]
    src = tmp_path / "openr1.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Data:
        solutions, subset, split = "generation", None, "train"

    (r,) = load_problems(str(src), data=Data())  # the row without a correct trace is dropped
    assert r["id"] == "a" and r["solution"] == "<think>ok</think> \\boxed{5}"
    plain = load_problems(str(src))
    assert [p["solution"] for p in plain] == ["2+3=5", "1+1=2"]
