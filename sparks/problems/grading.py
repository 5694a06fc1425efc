"""Grading math answers: the last \\boxed{...} of a response, verified against the gold answer.

Shared by GRPO's reward and by evaluation, so that training optimises what evaluation measures.
math-verify's default timeouts use signals, which fail outside the main thread (TRL, Prefect
threads), so they are off here; the inputs are short answers, not arbitrary LaTeX documents.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

# It warns on every call that timeouts are off; they are off on purpose (see above).
logging.getLogger("math_verify").setLevel(logging.ERROR)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} in `text` (nested braces allowed), or None.

    >>> last_boxed("so \\\\boxed{1} then \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> last_boxed("no box: 42") is None
    True
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None  # unclosed: truncated mid-answer


_SPACING = re.compile(r"\\(?:[ ,;:!]|quad|qquad)|~")


def final_answer(text: str) -> str | None:
    """The last boxed answer, or None when there is none, it is unclosed, or it holds nothing
    but spacing (`\\boxed{}`, `\\boxed{\\ }`): what the grader, the failure modes and the
    viewer all call "no answer".

    >>> final_answer("\\\\boxed{ 12 }"), final_answer("\\\\boxed{\\\\ }"), final_answer("\\\\boxed{4")
    (' 12 ', None, None)
    """
    answer = last_boxed(text)
    if answer is None or not _SPACING.sub("", answer).strip():
        return None
    return answer


_WRAPPERS = re.compile(r"\\(?:textbf|text|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_CHOICE = re.compile(r"^\(?\s*[A-E]\s*\)\s*")


def clean_gold(answer: str) -> str | None:
    r"""A gold answer taken from a solution's \\boxed{}, as the grader can compare it: text
    wrappers and multiple-choice letters removed, a parenthesised number unwrapped; None when
    nothing but a choice letter is left (the record has no value to grade against).

    >>> clean_gold("\\textbf{(073)}"), clean_gold("\\textbf{(C)}\\ 12"), clean_gold("$25$")
    ('073', '12', '25')
    >>> clean_gold("\\textbf{(C)}") is None, clean_gold("\\frac{1}{2}")
    (True, '\\frac{1}{2}')
    """
    s = answer
    for _ in range(3):  # nested wrappers
        s = _WRAPPERS.sub(r"\1", s)
    s = s.replace("$", "").replace("\\ ", " ").replace("~", " ").strip()
    if re.fullmatch(r"\(?\s*[A-E]\s*\)?", s):
        return None
    s = _CHOICE.sub("", s).strip()
    m = re.fullmatch(r"\(\s*(-?[\d.,]+)\s*\)", s)
    return (m.group(1) if m else s) or None


@lru_cache(maxsize=4096)
def _parse(expr: str):
    from math_verify import parse

    return parse(f"${expr}$", parsing_timeout=None)


def is_correct(response: str, gold: str) -> bool:
    """Whether the response's last boxed answer equals `gold` (1/2, 0.5 and \\frac{1}{2} are equal;
    "025" equals 25). A response without a complete \\boxed{} is wrong."""
    from math_verify import verify

    answer = final_answer(response)
    if answer is None:
        return False
    return bool(verify(_parse(str(gold)), _parse(answer), timeout_seconds=None))
