"""Failure modes of graded samples: why a response is wrong, by documented rules, with evidence.

Every sample gets exactly one mode, the first rule that applies:

1. `correct`: the last boxed answer equals the gold answer (`sparks.grading.is_correct`).
2. `loop`: a span of `LOOP_MIN_WORDS` to `LOOP_MAX_WORDS` words repeated back to back at least
   `LOOP_MIN_REPEATS` times, the repeats covering at least `LOOP_MIN_SHARE` of the response's words
   (a model that loops usually also runs out of tokens: the loop is the cause, so it comes first).
   Evidence: the repeated span.
3. `no_answer`: truncated (stopped by max_tokens), or no `\\boxed{}` answer. Evidence: none.
4. `arithmetic`: an equation stated in the response (`46 + 59 = 172`, `3 * 4 = 12`, `2^5 = 32`)
   whose two sides, evaluated exactly, differ. Only plain numbers and + - * x / ^ ( ) are read, by
   a small parser (never `eval`). Evidence: the first false equation.
5. `wrong_answer`: anything else.

The paper's "over-thinking failure modes, such as calculation errors or logical loops on simpler
tasks" are modes 4 and 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from sparks.grading import is_correct, last_boxed

MODES = ("correct", "loop", "no_answer", "arithmetic", "wrong_answer")
LOOP_MIN_WORDS = 3  # the shortest span that counts as a loop (words)
LOOP_MIN_REPEATS = 3  # back-to-back copies
LOOP_MIN_SHARE = 0.3  # of the response's words that the copies cover
LOOP_MAX_WORDS = 120  # the longest span looked for (bounds the time: words x this)


@dataclass(frozen=True)
class Failure:
    mode: str
    evidence: str = ""  # the looping span, or the first false equation, as it appears


def classify(response: str, gold: str, *, truncated: bool = False) -> Failure:
    """The failure mode of one graded sample (see the module's rules)."""
    if is_correct(response, gold):
        return Failure("correct")
    span = find_loop(response)
    if span:
        return Failure("loop", span)
    if truncated or last_boxed(response) is None:
        return Failure("no_answer")
    slip = first_false_equation(response)
    if slip:
        return Failure("arithmetic", slip)
    return Failure("wrong_answer")


def find_loop(text: str) -> str:
    """The span repeated back to back (see LOOP_*), or "" if there is none.

    >>> find_loop("so x = 2. then so x = 2. then so x = 2. then so x = 2. then")
    'so x = 2. then'
    >>> find_loop("a short answer with no repeats")
    ''
    """
    words = text.split()
    n = len(words)
    best = (0, 0, 0)  # (covered words, start, period)
    for period in range(LOOP_MIN_WORDS, min(n // LOOP_MIN_REPEATS, LOOP_MAX_WORDS) + 1):
        run = 0  # words i such that words[i] == words[i + period], consecutively
        for i in range(n - period):
            run = run + 1 if words[i] == words[i + period] else 0
            covered = run + period
            if covered >= LOOP_MIN_REPEATS * period and covered > best[0]:
                best = (covered, i - run + 1, period)
    covered, start, period = best
    if covered < LOOP_MIN_SHARE * n or covered == 0:
        return ""
    return " ".join(words[start : start + period])


_NUM = r"\d+(?:\.\d+)?"
# a chain of numbers and operators, "=", then a number: the two sides of a stated equation
_EQUATION = re.compile(
    rf"(?<![\w.^])((?:\(\s*)*-?{_NUM}(?:\s*\)\s*)*(?:\s*[-+*/×÷^·]\s*(?:\(\s*)*-?{_NUM}(?:\s*\))*)+)"
    rf"\s*=\s*(-?{_NUM})(?![\w.]*\d)"
)


def first_false_equation(text: str) -> str:
    """The first `expression = number` in `text` that is false, as written; "" if none is.

    >>> first_false_equation("46 + 59 = 105, and 105 * 2 = 172, so ...")
    '105 * 2 = 172'
    >>> first_false_equation("3/4 = 0.75 and 2^5 = 32")
    ''
    """
    for m in _EQUATION.finditer(text):
        value = evaluate(m.group(1))
        if value is not None and value != Fraction(m.group(2)):
            return m.group(0).strip()
    return ""


_TOKEN = re.compile(rf"\s*(?:({_NUM})|([-+*/×÷^·()]))")


def evaluate(expr: str) -> Fraction | None:
    """The exact value of a plain arithmetic expression, or None if it is not one (or divides
    by zero). Grammar: sum := product (('+'|'-') product)*; product := power (('*'|'/') power)*;
    power := unary ('^' power)?; unary := '-' unary | number | '(' sum ')'.

    >>> evaluate("2 + 3 * 4"), evaluate("(1 + 1) ^ 3"), evaluate("7 / 0"), evaluate("2 ** x")
    (Fraction(14, 1), Fraction(8, 1), None, None)
    """
    tokens, pos = [], 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m:
            return None
        tokens.append(Fraction(m.group(1)) if m.group(1) else m.group(2))
        pos = m.end()
    ops = {"×": "*", "·": "*", "÷": "/"}
    tokens = [ops.get(t, t) if isinstance(t, str) else t for t in tokens]
    try:
        value, rest = _sum(tokens)
    except (ValueError, ZeroDivisionError, IndexError, OverflowError):
        return None
    return value if not rest else None


def _sum(t: list) -> tuple[Fraction, list]:
    value, t = _product(t)
    while t and t[0] in ("+", "-"):
        op, (right, t) = t[0], _product(t[1:])
        value = value + right if op == "+" else value - right
    return value, t


def _product(t: list) -> tuple[Fraction, list]:
    value, t = _power(t)
    while t and t[0] in ("*", "/"):
        op, (right, t) = t[0], _power(t[1:])
        value = value * right if op == "*" else value / right
    return value, t


def _power(t: list) -> tuple[Fraction, list]:
    base, t = _unary(t)
    if t and t[0] == "^":
        exp, t = _power(t[1:])
        if exp.denominator != 1 or abs(exp) > 64:
            raise ValueError("only small whole exponents")
        return base**exp, t
    return base, t


def _unary(t: list) -> tuple[Fraction, list]:
    if t[0] == "-":
        value, t = _unary(t[1:])
        return -value, t
    if t[0] == "(":
        value, t = _sum(t[1:])
        if not t or t[0] != ")":
            raise ValueError("unbalanced parenthesis")
        return value, t[1:]
    if isinstance(t[0], Fraction):
        return t[0], t[1:]
    raise ValueError(f"unexpected {t[0]!r}")
