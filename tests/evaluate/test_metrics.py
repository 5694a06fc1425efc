"""Grading and metrics on known right and wrong answers."""

from __future__ import annotations

import pytest

from sparks.evaluate.generate import Completion
from sparks.evaluate.metrics import grade, pass_at_k, summarise
from sparks.problems.grading import is_correct


@pytest.mark.parametrize(
    ("response", "gold", "ok"),
    [
        ("so \\boxed{1/2}.", "0.5", True),
        ("so \\boxed{0.5}.", "\\frac{1}{2}", True),
        ("so \\boxed{\\frac{1}{2}}.", "1/2", True),
        ("\\boxed{25}", "025", True),  # AIME's zero-padded answers
        ("\\boxed{27}", "27.0", True),  # AMC's float answers
        ("\\boxed{-1}", "-1.0", True),
        ("first \\boxed{3} then \\boxed{4}", "4", True),  # the last box counts
        ("first \\boxed{4} then \\boxed{3}", "4", False),
        ("the answer is 4", "4", False),  # no \boxed{}: wrong
        ("\\boxed{4", "4", False),  # truncated box
        ("\\boxed{}", "4", False),
        ("\\boxed{0.51}", "1/2", False),
    ],
)
def test_grading(response, gold, ok):
    assert is_correct(response, gold) is ok


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - (7 * 6) / (10 * 9))
    assert pass_at_k(5, 5, 3) == 1.0 and pass_at_k(5, 0, 3) == 0.0


def _c(text, n=10, truncated=False):
    return Completion(text, n, truncated)


def test_summary_metrics_on_known_samples():
    problems = [{"id": "a", "answer": "7"}, {"id": "b", "answer": "2"}]
    completions = [
        [
            _c("\\boxed{7}"),
            _c("\\boxed{7}"),
            _c("\\boxed{8}"),
            _c("no box", 40, True),
        ],  # 2/4 right, majority right
        [
            _c("\\boxed{3}"),
            _c("\\boxed{3}"),
            _c("\\boxed{2}"),
            _c("\\boxed{5}"),
        ],  # 1/4 right, majority wrong
    ]
    table = grade(problems, completions)
    assert list(table.columns) == [
        "problem_id",
        "sample",
        "gold",
        "answer",
        "correct",
        "length",
        "truncated",
        "response",
    ]
    assert table["correct"].tolist() == [True, True, False, False, False, False, True, False]
    m = summarise(table)
    assert m["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
    assert m["pass@4"] == pytest.approx(1.0)
    assert m["maj@4"] == pytest.approx(0.5)
    assert m["truncation_rate"] == pytest.approx(1 / 8)
    assert m["mean_length"] == pytest.approx((7 * 10 + 40) / 8)
    assert m["pass@1_ci_low"] <= m["pass@1"] <= m["pass@1_ci_high"]
    assert "pass@8" not in m and m["samples_per_problem"] == 4
