"""Equations stated in a model's response, read exactly: plain text and LaTeX alike.

The failure rules (`sparks.studies.failures`) need one fact from a response: did it state a false
equation? Real reasoning traces write maths as `46 + 59 = 105`, `$12 \\times 13 = 156$`,
`\\frac{3}{4} + \\frac{1}{4} = 1`, `1,500 + 500 = 2,000`, `12 cm + 8 cm = 20 cm`, inside `<think>`
blocks and aligned environments. Reading them takes three phases:

1. **Scan** the text once into tokens with their character spans: numbers (thousands separators
   `1,500`, `1{,}500`, `1\\,500` joined), operators (`+ - * / ^ × · ÷ \\times \\cdot \\div`), `=`,
   groups (`( )`, `{ }`, `\\frac`), variables, units, and breaks. Inside maths (`$..$`, `\\(..\\)`,
   `\\[..\\]`) every letter is a variable; in prose a word is a break, except a unit directly
   after a number and before an operator (`12 cm + ...`), a single letter next to an operator
   (`x + 3`), and words that change the arithmetic (`of`, `mod`, `times`, `\\pmod`, `\\dots`),
   which are variables so that the side they touch is never evaluated.
2. **Chain**: a run of tokens without a break, split at `=`, is a chain `A = B = C`; each adjacent
   pair is an equation.
3. **Check** a pair only where both sides parse as complete arithmetic (a small exact parser over
   `Fraction`s, never `eval`) and the chain has an operator somewhere (so a prose cut such as
   "50% of 80 = 40" is not read as `80 = 40`). A side written as a decimal is allowed its rounding
   (`22/7 = 3.14`, `1/3 = 0.333`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# -- phase 1: scan ---------------------------------------------------------------------------

NUM, OP, EQ, LP, RP, FRAC, PCT, VAR, BREAK = "num op eq lp rp frac pct var break".split()

_OPS = {"+": "+", "-": "-", "−": "-", "*": "*", "×": "*", "·": "*", "/": "/", "÷": "/", "^": "^"}
_COMMAND_OPS = {"times": "*", "cdot": "*", "div": "/", "ast": "*"}
_IGNORED = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr",
            "displaystyle", "textstyle", "boxed", "mathbf", "bf", "mathrm", "!", ",", ";", ":",
            " ", "\\", "limits"}  # fmt: skip
_FRACS = {"frac", "dfrac", "tfrac", "cfrac"}
# prose or LaTeX words that change what the numbers beside them mean: the side is not arithmetic
_POISON = {"of", "mod", "pmod", "bmod", "times", "plus", "minus", "over", "divided", "squared",
           "cubed", "percent", "per", "dots", "cdots", "ldots", "vdots", "sqrt", "binom", "choose",
           "lfloor", "rfloor", "lceil", "rceil", "log", "ln", "sin", "cos", "tan", "pi", "infty",
           "sum", "prod", "int", "lim", "gcd", "lcm", "max", "min", "approx", "pm", "mp", "e"}  # fmt: skip
_MATH_ENVS = {"align", "aligned", "equation", "gather", "gathered", "multline", "eqnarray", "split",
              "alignat", "flalign", "math", "displaymath"}  # fmt: skip
_UNIT_CMDS = {"text", "textrm", "mathrm", "mbox", "textbf", "operatorname", "mathit", "textit"}
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef"

_SCAN = re.compile(
    r"(?P<num>\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+(?![\d])(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"|(?P<display>\$\$|\\\[|\\\]|\\\(|\\\))"
    r"|(?P<env>\\(?P<edge>begin|end)\s*\{(?P<envname>[A-Za-z*]+)\})"
    r"|(?P<delim>\\(?:left|right|[bB]igg?[lr]?)\s*\\?(?P<bracket>[()\[\]{}]))"
    r"|(?P<dollar>\\?\$)"
    r"|(?P<textcmd>\\(?:" + "|".join(sorted(_UNIT_CMDS)) + r")\s*\{(?P<textarg>[^{}]*)\})"
    r"|(?P<cmd>\\(?:[A-Za-z]+|.))"
    r"|(?P<word>[A-Za-z]+)"
    r"|(?P<cjk>[" + _CJK + r"]+)"
    r"|(?P<newline>\n)"
    r"|(?P<space>[ \t\r&]+)"
    r"|(?P<sym>\*\*|.)",
    re.S,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str  # the operator for OP, else the text as written
    start: int
    end: int
    value: Fraction | None = None


def _number(text: str) -> Fraction:
    return Fraction(re.sub(r"\{,\}|\\,|,", "", text))


def scan(text: str) -> list[Token]:
    """The response as tokens (see the module's phase 1); spaces dropped, units dropped."""
    raw: list[tuple[str, str, int, int]] = []  # (kind, text, start, end) before units are decided
    math = False
    for m in _SCAN.finditer(text):
        kind, s, a, b = m.lastgroup, m.group(), m.start(), m.end()
        if kind == "textarg":
            kind = "textcmd"
        elif kind in ("edge", "envname"):
            kind = "env"
        elif kind == "bracket":
            kind = "delim"
        if kind == "num":
            raw.append((NUM, s, a, b))
        elif kind == "display":
            math = s in ("$$", "\\[", "\\(") if s != "$$" else not math
            raw.append((BREAK, s, a, b))
        elif kind == "delim":  # \left( ... \right): the bracket, spanning its command
            bracket = m.group("bracket")
            raw.append((LP if bracket in "([{" else RP, bracket, a, b))
        elif kind == "env":  # align, equation, gather, ...: maths inside
            if m.group("envname").rstrip("*") in _MATH_ENVS:
                math = m.group("edge") == "begin"
            raw.append((BREAK, s, a, b))
        elif kind == "dollar":
            if s == "\\$" or _is_currency(text, a):
                continue  # a price: "$5 + $3 = $8" reads as "5 + 3 = 8"
            math = not math
            raw.append((BREAK, s, a, b))
        elif kind == "textcmd":
            arg = m.group("textarg").strip()
            if not arg:
                continue
            as_var = arg.lower() in _POISON or len(arg) == 1 and math
            raw.append((VAR, arg, a, b) if as_var else ("word", arg, a, b))
        elif kind == "cmd":
            name = s[1:]
            if name in _COMMAND_OPS:
                raw.append((OP, _COMMAND_OPS[name], a, b))
            elif name in _FRACS:
                raw.append((FRAC, s, a, b))
            elif name in _IGNORED:
                continue
            elif name == "%":
                raw.append((PCT, s, a, b))
            elif name in ("{", "}"):
                raw.append((LP if name == "{" else RP, s, a, b))
            elif name in _POISON or name.isalpha() and _greek(name):
                raw.append((VAR, s, a, b))
            else:  # relations (\approx, \equiv, \le, \implies), \quad, \begin, anything unknown
                raw.append((BREAK, s, a, b))
        elif kind == "word":
            if math or s.lower() in _POISON:
                raw.append((VAR, s, a, b))
            else:
                raw.append(("word", s, a, b))
        elif kind == "cjk":
            raw.append((BREAK, s, a, b))
        elif kind == "newline":
            if not math:
                raw.append((BREAK, s, a, b))
        elif kind == "space":
            continue
        elif s in "-*" and _is_bullet(text, a):
            raw.append((BREAK, s, a, b))
        elif s in _OPS:
            raw.append((OP, _OPS[s], a, b))
        elif s == "=":
            raw.append((EQ, s, a, b))
        elif s in "({[":
            raw.append((LP, s, a, b))
        elif s in ")}]":
            raw.append((RP, s, a, b))
        elif s == "%":
            raw.append((PCT, s, a, b))
        else:  # punctuation, markdown `**`, anything else
            raw.append((BREAK, s, a, b))
    return _decide_words(raw)


def _greek(name: str) -> bool:
    return name.lower() in {"alpha", "beta", "gamma", "delta", "epsilon", "theta", "lambda", "mu",
                            "phi", "sigma", "omega", "tau", "rho", "eta", "zeta", "xi", "chi", "psi",
                            "nu", "kappa", "varphi", "varepsilon"}  # fmt: skip


def _is_bullet(text: str, at: int) -> bool:
    """A `-` or `*` that starts a markdown list item, not a minus sign."""
    line_start = text.rfind("\n", 0, at) + 1
    return not text[line_start:at].strip() and text[at + 1 : at + 2] == " "


def _is_currency(text: str, at: int) -> bool:
    """A `$` that starts a price: a digit follows, and the line's next `$` starts a price too
    (or there is none), so the two are not the ends of one maths span."""
    if not text[at + 1 : at + 2].isdigit():
        return False
    rest = text[at + 1 :].split("\n", 1)[0]
    nxt = rest.find("$")
    return nxt < 0 or rest[nxt + 1 : nxt + 2].isdigit()


def _decide_words(raw: list[tuple[str, str, int, int]]) -> list[Token]:
    """Prose words become units (after a number, before an operator or `=`: dropped), variables
    (one letter next to an operator or glued to a number), or breaks."""
    tokens: list[Token] = []
    for i, (kind, s, a, b) in enumerate(raw):
        if kind != "word":
            value = _number(s) if kind == NUM else None
            tokens.append(Token(kind, s, a, b, value))
            continue
        prev = raw[i - 1] if i else None
        nxt = raw[i + 1] if i + 1 < len(raw) else None
        if prev and prev[0] == NUM and nxt and nxt[0] in (OP, EQ, RP):
            continue  # a unit: "12 cm + 8 cm"
        glued = prev and prev[0] == NUM and prev[3] == a or nxt and nxt[0] == NUM and nxt[2] == b
        beside_op = (prev and prev[0] in (OP, EQ, LP) or nxt and nxt[0] in (OP, EQ, LP)) or (
            nxt and nxt[1] == "(" and nxt[2] == b
        )
        if len(s) == 1 and (beside_op or glued):
            tokens.append(Token(VAR, s, a, b))
        else:
            tokens.append(Token(BREAK, s, a, b))
    return tokens


# -- phase 2 and 3: chains and checks ---------------------------------------------------------


@dataclass(frozen=True)
class Equation:
    written: str  # the two sides as they appear in the response
    left: Fraction  # exact values of the two sides
    right: Fraction
    true: bool
    start: int  # character span in the response
    end: int


def equations(text: str) -> list[Equation]:
    """Every checkable equation in `text`, in order (see the module's phases 2 and 3).

    >>> [(e.written, e.true) for e in equations("$12 \\\\times 13 = 146$, so 1,500 + 500 = 2,000")]
    [('12 \\\\times 13 = 146', False), ('1,500 + 500 = 2,000', True)]
    >>> equations("x^2 + 3^2 = 25, and 50% of 80 = 40")
    []
    """
    out: list[Equation] = []
    for chain in _chains(scan(text)):
        if not any(t.kind in (OP, FRAC, PCT) for side in chain for t in side):
            continue
        values = [_value(side) for side in chain]
        for k in range(len(chain) - 1):
            left, right = values[k], values[k + 1]
            if left is None or right is None:
                continue
            a, b = chain[k][0].start, chain[k + 1][-1].end
            true = left == right or _rounded(chain[k + 1], left) or _rounded(chain[k], right)
            out.append(Equation(text[a:b], left, right, true, a, b))
    return out


def _chains(tokens: list[Token]) -> list[list[list[Token]]]:
    """Runs of tokens between breaks, split at `=` into sides (empty sides kept as [])."""
    chains: list[list[list[Token]]] = []
    sides: list[list[Token]] = []
    side: list[Token] = []
    for t in [*tokens, Token(BREAK, "", 0, 0)]:
        if t.kind == EQ:
            sides.append(side)
            side = []
        elif t.kind == BREAK:
            sides.append(side)
            if len(sides) > 1:
                chains.append(sides)
            sides, side = [], []
        else:
            side.append(t)
    return chains


def _rounded(side: list[Token], exact: Fraction) -> bool:
    """Whether `side` is one decimal number that `exact` rounds or truncates to."""
    if len(side) != 1 or side[0].kind != NUM or "." not in side[0].text:
        return False
    places = len(side[0].text.rsplit(".", 1)[1])
    value = side[0].value
    return value is not None and abs(exact - value) <= Fraction(1, 10**places)


def _value(side: list[Token]) -> Fraction | None:
    """The exact value of one side, or None if it is not complete arithmetic."""
    if not side or any(t.kind == VAR for t in side):
        return None
    try:
        value, rest = _sum(side)
    except (_NotArithmetic, ZeroDivisionError, OverflowError):
        return None
    return value if not rest else None


class _NotArithmetic(ValueError):
    pass


def evaluate(expr: str) -> Fraction | None:
    """The exact value of an arithmetic expression in plain text or LaTeX, or None if it is not
    one (or divides by zero). Grammar: sum := product (('+'|'-') product)*;
    product := power (('*'|'/') power | implicit power)*; power := unary ('^' unary)?;
    unary := '-' unary | atom '%'?; atom := number | '(' sum ')' | '{' sum '}' | frac.

    >>> evaluate("2 + 3 * 4"), evaluate("(1 + 1) ^ 3"), evaluate("7 / 0"), evaluate("2 ** x")
    (Fraction(14, 1), Fraction(8, 1), None, None)
    >>> evaluate("\\\\frac{3}{4} + \\\\dfrac{1}{4}"), evaluate("2^{10} \\\\cdot 5\\\\%")
    (Fraction(1, 1), Fraction(256, 5))
    """
    tokens = scan(expr)
    if any(t.kind in (BREAK, EQ) for t in tokens):
        return None
    return _value(tokens)


def _sum(t: list[Token]) -> tuple[Fraction, list[Token]]:
    value, t = _product(t)
    while t and t[0].kind == OP and t[0].text in "+-":
        op, (right, t) = t[0].text, _product(t[1:])
        value = value + right if op == "+" else value - right
    return value, t


def _product(t: list[Token]) -> tuple[Fraction, list[Token]]:
    value, t = _power(t)
    while t:
        if t[0].kind == OP and t[0].text in "*/":
            op, (right, t) = t[0].text, _power(t[1:])
            value = value * right if op == "*" else value / right
        elif t[0].kind == LP and t[0].text in "([":  # 2(3 + 4), (2)(3); never 2\frac12
            right, t = _power(t)
            value = value * right
        else:
            break
    return value, t


def _power(t: list[Token]) -> tuple[Fraction, list[Token]]:
    base, t = _unary(t)
    if t and t[0].kind == OP and t[0].text == "^":
        exp, t = _unary(t[1:])
        if exp.denominator != 1 or abs(exp) > 64 or abs(base) > 10**6:
            raise _NotArithmetic("only small whole exponents")
        return Fraction(base**exp), t
    return base, t


def _unary(t: list[Token]) -> tuple[Fraction, list[Token]]:
    if not t:
        raise _NotArithmetic("an operator without an operand")
    if t[0].kind == OP and t[0].text == "-":
        value, t = _unary(t[1:])
        return -value, t
    value, t = _atom(t)
    if t and t[0].kind == PCT:
        return value / 100, t[1:]
    return value, t


def _atom(t: list[Token]) -> tuple[Fraction, list[Token]]:
    head = t[0]
    if head.kind == NUM and head.value is not None:
        return head.value, t[1:]
    if head.kind == LP:
        value, t = _sum(t[1:])
        if not t or t[0].kind != RP or _CLOSE[head.text] != t[0].text:
            raise _NotArithmetic("unbalanced group")
        return value, t[1:]
    if head.kind == FRAC:
        if len(t) > 1 and t[1].kind == NUM and re.fullmatch(r"\d\d", t[1].text):  # \frac12
            return Fraction(int(t[1].text[0]), int(t[1].text[1])), t[2:]
        num, t = _group(t[1:])
        den, t = _group(t)
        return num / den, t
    raise _NotArithmetic(f"unexpected {head.text!r}")


_CLOSE = {"(": ")", "[": "]", "{": "}", "\\{": "\\}"}


def _group(t: list[Token]) -> tuple[Fraction, list[Token]]:
    """One `{...}` argument of `\\frac`."""
    if not t or t[0].text != "{":
        raise _NotArithmetic("\\frac needs two groups")
    return _atom(t)
