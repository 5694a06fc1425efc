"""Failure modes on hand-written responses: every rule, its order, and its evidence."""

from __future__ import annotations

from fractions import Fraction

import pytest

from sparks.studies.equations import evaluate
from sparks.studies.failures import classify, find_loop, first_false_equation

LOOPING = (
    "First, 12 + 30 = 42. "
    + "Wait, let me recompute the total again. " * 6
    + "So the answer is \\boxed{41}."
)


@pytest.mark.parametrize(
    ("response", "gold", "truncated", "mode", "evidence"),
    [
        ("46 + 59 = 105, so \\boxed{105}.", "105", False, "correct", ""),
        # a correct answer wins over everything else in the response, even a slip on the way
        ("2 + 2 = 5, oops, 46 + 59 = 105: \\boxed{105}", "105", False, "correct", ""),
        (LOOPING, "42", False, "loop", "Wait, let me recompute the total again."),
        # the loop is named even when it also ran out of tokens: it is why
        ("Wait, let me recompute the total again. " * 8, "42", True, "loop",
         "Wait, let me recompute the total again."),
        ("46 + 59 = 105, and then the total is", "105", True, "no_answer", ""),
        ("The answer is 105.", "105", False, "no_answer", ""),
        ("46 + 59 = 172, so \\boxed{172}.", "105", False, "arithmetic",
         "46 + 59 = 172"),
        ("We have 3 × 4 = 12 and 12 ÷ 4 = 2, so \\boxed{2}.", "3", False, "arithmetic",
         "12 ÷ 4 = 2"),
        ("(2 + 3) * 4 = 20, 2^5 = 30, \\boxed{30}", "32", False, "arithmetic",
         "2^5 = 30"),
        ("46 + 59 = 105, so \\boxed{106}.", "105", False, "wrong_answer", ""),
        # not arithmetic: a variable, an assignment, a date, a ratio written with a colon
        ("x + 3 = 7 gives x = 5, in 2024-05-06, 3:4, \\boxed{5}", "4", False, "wrong_answer", ""),
    ],
)  # fmt: skip
def test_each_rule_gives_its_mode_and_evidence(response, gold, truncated, mode, evidence):
    failure = classify(response, gold, truncated=truncated)
    assert (failure.mode, failure.evidence) == (mode, evidence)


def test_a_loop_must_cover_its_share_of_the_response():
    # three copies of a short span inside a long response are not a loop
    text = "we add the two numbers. " * 3 + " ".join(f"term {i} is {7 * i}," for i in range(40))
    assert find_loop(text) == ""
    assert find_loop("we add the two numbers. " * 5 + "done") == "we add the two numbers."


def test_the_parser_is_exact_and_reads_nothing_but_arithmetic():
    assert evaluate("1/3 + 1/6") == Fraction(1, 2)  # exact: 0.5, not 0.49999...
    assert evaluate("-2 * (3 - 5)") == 4
    assert evaluate("1.5 * 4") == 6
    assert evaluate("2 ^ 1000") is None  # exponents are bounded
    for text in ("__import__('os')", "2 + x", "3 +", "(1 + 2", "1 2"):
        assert evaluate(text) is None, text
    assert first_false_equation("1/3 + 1/6 = 0.5") is None
    assert first_false_equation("so 0.1 + 0.2 = 0.3 exactly") is None
    assert classify("so 1/2 + 1/3 = 2/5: \\boxed{2/5}", "5/6").true_value == "5/6 = 0.833333"


def test_the_marked_span_covers_every_copy_of_a_loop_across_lines_and_counters():
    text = "Okay.\n" + "".join(
        f"Attempt {i}: recheck the sum.\nStill the same.\n" for i in range(9)
    )
    found = classify(text, "7", truncated=True)
    assert found.mode == "loop" and found.evidence == "Attempt 0: recheck the sum.\nStill the same."
    assert text[found.start : found.end].count("Still the same.") == 9
    slip = classify("Then $12 \\times 13 = 146$, \\boxed{146}", "156")
    assert (slip.evidence, slip.true_value) == ("12 \\times 13 = 146", "156")
    assert "Then $" + slip.evidence == "Then $12 \\times 13 = 146$"[: slip.end]
