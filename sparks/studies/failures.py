"""Failure modes of graded samples: why a response is wrong, by documented rules, with evidence.

Every sample gets exactly one mode, the first rule that applies:

1. `correct`: the last boxed answer equals the gold answer (`sparks.problems.grading.is_correct`).
2. `loop`: the response repeats itself back to back. Either a span of `LOOP_MIN_WORDS` tokens or
   more (words, numbers, punctuation, single CJK characters; up to paragraphs) repeated at least
   `LOOP_MIN_REPEATS` times, the copies covering `LOOP_MIN_SHARE` of the response, with at most
   one number changing between copies (a counter: "check step 5 ... check step 6 ...") and at
   least two words in the span; a span of fewer words (numbers, symbols: "1234, 1243, ...") must
   repeat exactly `LOOP_MIN_BARE_REPEATS` times (a short list, "1, 1, 1, 1", is an enumeration); or a unit of
   up to 8 characters repeated `LOOP_MIN_CHAR_REPEATS` times ("1111...", "!!!!") over the same
   share. A loop usually also runs out of tokens: it is the cause, so it comes first.
   Evidence: one copy of the span.
3. `no_answer`: truncated (stopped by max_tokens), or no complete, non-empty `\\boxed{}` answer
   (the grader treats `\\boxed{}` and an unclosed box as no answer). Evidence: none.
4. `arithmetic`: an equation stated in the response whose two sides, read exactly, differ
   (`sparks.studies.equations`: plain text and LaTeX, units, separators; only where both sides
   are complete arithmetic), and that the response does not correct later (the same left side
   stated again with its true value). Evidence: the equation as written; `true_value` its left
   side's exact value.
5. `wrong_answer`: anything else.

The paper's "over-thinking failure modes, such as calculation errors or logical loops on simpler
tasks" are modes 4 and 2.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sparks.problems.grading import final_answer, is_correct
from sparks.studies.equations import Equation, equations

MODES = ("correct", "loop", "no_answer", "arithmetic", "wrong_answer")
LOOP_MIN_WORDS = 3  # the shortest span that counts as a loop (tokens)
LOOP_MIN_REPEATS = 3  # back-to-back copies
LOOP_MIN_SHARE = 0.3  # of the response (tokens, or characters for a unit loop) that copies cover
LOOP_MIN_BARE_REPEATS = 10  # exact copies of a span with fewer than two words
LOOP_MIN_CHAR_REPEATS = 40  # copies of a unit of <= 8 characters ("1111...")
LOOP_CANDIDATES = 8  # the most frequent repeat distances tried as periods, besides 3..12


@dataclass(frozen=True)
class Failure:
    mode: str
    evidence: str = ""  # one copy of the loop, or the false equation, as written in the response
    true_value: str = ""  # the false equation's left side, evaluated exactly
    start: int = 0  # characters of the response to mark: every copy of the loop, or the equation
    end: int = 0


def classify(response: str, gold: str, *, truncated: bool = False) -> Failure:
    """The failure mode of one graded sample (see the module's rules)."""
    if is_correct(response, gold):
        return Failure("correct")
    loop = locate_loop(response)
    if loop:
        return Failure("loop", response[loop[0] : loop[1]], start=loop[0], end=loop[2])
    if truncated or final_answer(response) is None:
        return Failure("no_answer")
    slip = first_false_equation(response)
    if slip:
        return Failure("arithmetic", slip.written, _show(slip.left), slip.start, slip.end)
    return Failure("wrong_answer")


_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_LOOP_TOKEN = re.compile(rf"[{_CJK}]|[^\W\d_]+|\d+(?:[.,]\d+)*|\S")
_UNIT_LOOP = re.compile(rf"(\S.{{0,7}}?)\1{{{LOOP_MIN_CHAR_REPEATS - 1},}}", re.S)


def find_loop(text: str) -> str:
    """One copy of the span the response repeats back to back (see rule 2), or "".

    >>> find_loop("First, x = 2. " + "Wait, so x = 2 then. " * 4)
    'Wait, so x = 2 then.'
    >>> find_loop("Check step 7 again. Check step 8 again. Check step 9 again. Check step 10 again.")
    'Check step 7 again.'
    >>> find_loop("a short answer with no repeats"), find_loop("1, 1, 2, 1, 1, 2, 1, 1, 2")
    ('', '')
    """
    found = locate_loop(text)
    return text[found[0] : found[1]] if found else ""


def locate_loop(text: str) -> tuple[int, int, int] | None:
    """(start, end of the first copy, end of the last copy) in characters, or None."""
    spans = [(m.start(), m.end()) for m in _LOOP_TOKEN.finditer(text)]
    words = [text[a:b] for a, b in spans]
    found = _token_loop(words, len(words))
    if found:
        start, period, covered = found
        # one copy, read from a sentence's start where the loop has one
        ends = {".", "!", "?", "。", "！", "？", "\n", ":"}
        shift = next((r for r in range(period) if start + r and words[start + r - 1] in ends), 0)
        last = start + covered - 1
        start += shift
        return spans[start][0], spans[start + period - 1][1], spans[last][1]
    unit = _UNIT_LOOP.search(text)
    if unit and unit.end() - unit.start() >= LOOP_MIN_SHARE * len(text.strip()):
        return unit.start(), unit.start() + len(unit.group(1)), unit.end()
    return None


def _token_loop(words: list[str], n: int) -> tuple[int, int, int] | None:
    """(first token, period, tokens covered) of the longest qualifying loop, or None."""
    if n < LOOP_MIN_WORDS * LOOP_MIN_REPEATS:
        return None
    keys = ["#" if w[0].isdigit() else w for w in words]  # numbers may change: counters
    ids: dict[str, int] = {}
    codes = np.array([ids.setdefault(k, len(ids)) for k in keys])
    # candidate periods: the usual distance between repeats of a 3-token sequence
    last: dict[tuple, int] = {}
    dist: Counter[int] = Counter()
    for i in range(n - 2):
        gram = (codes[i], codes[i + 1], codes[i + 2])
        if gram in last:
            dist[i - last[gram]] += 1
        last[gram] = i
    periods = set(range(LOOP_MIN_WORDS, min(12, n // LOOP_MIN_REPEATS) + 1))
    periods |= {p for p, _ in dist.most_common(LOOP_CANDIDATES) if p >= LOOP_MIN_WORDS}
    best = None  # (covered, -period, start)
    for p in sorted(periods):
        if p * LOOP_MIN_REPEATS > n:
            continue
        for covered, start in _runs(codes[:-p] == codes[p:], p):
            if covered < max(LOOP_MIN_REPEATS * p, LOOP_MIN_SHARE * n):
                continue
            if not _is_loop(words, keys, start, p, covered):
                continue
            if best is None or (covered, -p) > best[:2]:
                best = (covered, -p, start)
    return (best[2], -best[1], best[0]) if best else None


def _runs(eq: np.ndarray, period: int) -> list[tuple[int, int]]:
    """(covered tokens, start) of each run of positions whose token repeats `period` later."""
    padded = np.concatenate(([False], eq, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(b - a) + period, int(a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _is_loop(words: list[str], keys: list[str], start: int, period: int, covered: int) -> bool:
    """Two words in one copy and at most one number that changes between copies; or, with
    fewer words, `LOOP_MIN_BARE_REPEATS` exact copies."""
    copy = keys[start : start + period]
    copies = covered // period
    if sum(k[0].isalpha() for k in copy) < 2:
        exact = words[start : start + period] * copies == words[start : start + copies * period]
        return copies >= LOOP_MIN_BARE_REPEATS and exact
    changing = 0
    for j, k in enumerate(copy):
        if k == "#":
            seen = {words[start + j + c * period] for c in range(copies)}
            changing += len(seen) > 1
    return changing <= 1


def first_false_equation(text: str) -> Equation | None:
    """The first false equation in `text` that it does not correct later, or None.

    >>> slip = first_false_equation("46 + 59 = 105, and 105 * 2 = 172, so ...")
    >>> slip.written, slip.left
    ('105 * 2 = 172', Fraction(210, 1))
    >>> first_false_equation("$12 \\\\times 13 = 146$. Wait: $12 \\\\times 13 = 156$.") is None
    True
    """
    found = equations(text)
    for i, eq in enumerate(found):
        if eq.true:
            continue
        if not any(later.true and later.left == eq.left for later in found[i + 1 :]):
            return eq
    return None


def _show(value: Fraction) -> str:
    """An exact value as a reader checks it: 105, or 5/6 = 0.833333."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator} = {float(value):.6g}"
