"""Synthetic math problems in the AIME/AMC record shape, clean/corrupted pairs for attribution, and
the plain-text corpus the world's base model is pretrained on.

Every task is `{id, problem, answer, solution, level, family}`; the solution reasons step by step and ends
in `\\boxed{answer}`. Every step is one *primitive*: a number up to 99 plus or minus one digit, or
a product of two digits. Levels are difficulty for a model that knows the primitives, because
each step can go wrong and the steps multiply; level 3 also holds the AIME-like tail, a family
outside the primitives that stays near zero after post-training:

1. one step                               "Compute 47+8."              "Compute 63-7."
2. two or three steps                     "Compute 47+8-6+3."          "Compute 6*7+8."
3. a four-step word problem               "Ava has 23 pens. Ava buys 6 more, ..."
   and a two-digit product (the tail)     "Compute 47*38."

Arithmetic is written without spaces ("47+8=55."), as much math text is: an operand is then the
token right after its operator, which a tiny model's attention finds far sooner than a digit
behind a space token (copying operands is what every step needs first).

A template draws its words and its numbers separately, so a corrupted twin keeps the words and
redraws numbers of the same digit counts: with digit-level tokenization the two prompts then have
equal token length, which EAP-IG needs.

The base model's corpus (`pretrain_documents`) is plain text with no chat template and no
`\\boxed{}`: arithmetic facts over the primitives and worked solutions in a few plain layouts
("Problem: ... Solution: ... So the answer is 52.", "Q: ... A: ...", ...; never a test problem). A model trained on it
knows the primitives and how to chain them, but not the chat format the evaluation asks in.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
BOXED_PREFIX = "The answer is \\boxed{"
PLAIN_PREFIX = "So the answer is "  # the base corpus' closing words: no \boxed{}

NAMES = ("Ava", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Juno")
ITEMS = ("apples", "pens", "stamps", "coins", "books", "shells", "cards", "beads")
# the word problem's events: each adds or removes one digit's worth of items
GAINS = ("buys {} more", "finds {}", "gets {} as a gift", "wins {}")
LOSSES = ("gives away {}", "loses {}", "sells {}", "uses {}")
LOW, HIGH = 10, 99  # every running total of a multi-step problem stays two digits


@dataclass(frozen=True)
class MathTask:
    """One problem in the AIME/AMC record shape."""

    id: str
    problem: str
    answer: str
    solution: str
    level: int
    family: str  # the template's name ("product" is the AIME-like tail)

    def to_record(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PromptPair:
    """A clean and a corrupted prompt of equal token length whose next tokens differ."""

    id: str
    template: str
    clean: str
    corrupted: str
    clean_answer: str
    corrupted_answer: str

    def to_record(self) -> dict:
        return asdict(self)


# A template: words(rng) -> dict, numbers(rng, words) -> dict, render(words, numbers) ->
# (problem, steps, answer). Numbers may depend on the words (a chain's signs), never the reverse.
@dataclass(frozen=True)
class Template:
    name: str
    level: int
    words: Callable[[random.Random], dict]
    numbers: Callable[[random.Random, dict], dict]
    render: Callable[[dict, dict], tuple[str, list[str], int]]


def _digit(rng: random.Random) -> int:
    return rng.randint(2, 9)


def _walk(rng: random.Random, w: dict) -> dict:
    """A start and one digit per sign of `w` such that every running total stays in LOW..HIGH."""
    while True:
        start, ds = rng.randint(LOW, HIGH), [_digit(rng) for _ in w["signs"]]
        if all(LOW <= t <= HIGH for t in _totals(start, w["signs"], ds)):
            return {"start": start, "ds": ds}


def _totals(start: int, signs: list[str], ds: list[int]) -> list[int]:
    out, total = [], start
    for s, d in zip(signs, ds, strict=True):
        total += d if s == "+" else -d
        out.append(total)
    return out


def _chain_steps(start: int, signs: list[str], ds: list[int]) -> tuple[list[str], int]:
    steps, total = [], start
    for s, d, t in zip(signs, ds, _totals(start, signs, ds), strict=True):
        steps.append(f"{total}{s}{d}={t}.")
        total = t
    return steps, total


def _no_words(rng: random.Random) -> dict:
    return {}


def _one_sign(rng: random.Random) -> dict:
    return {"signs": [rng.choice("+-")]}


def _three_signs(rng: random.Random) -> dict:
    return {"signs": [rng.choice("+-") for _ in range(3)]}


def _render_chain(w: dict, n: dict) -> tuple[str, list[str], int]:
    terms = "".join(f"{s}{d}" for s, d in zip(w["signs"], n["ds"], strict=True))
    steps, answer = _chain_steps(n["start"], w["signs"], n["ds"])
    return f"Compute {n['start']}{terms}.", steps, answer


def _mixed_words(rng: random.Random) -> dict:
    return {"op": rng.choice("+-")}


def _mixed_numbers(rng: random.Random, w: dict) -> dict:
    a, b = _digit(rng), _digit(rng)
    return {"a": a, "b": b, "c": rng.randint(2, min(9, a * b - 1))}


def _render_mixed(w: dict, n: dict) -> tuple[str, list[str], int]:
    a, b, c, op = n["a"], n["b"], n["c"], w["op"]
    ab = a * b
    ans = ab + c if op == "+" else ab - c
    return f"Compute {a}*{b}{op}{c}.", [f"{a}*{b}={ab}.", f"{ab}{op}{c}={ans}."], ans


def _story(rng: random.Random) -> dict:
    signs = [rng.choice("+-") for _ in range(4)]
    verbs = [rng.choice(GAINS if s == "+" else LOSSES) for s in signs]
    return {"name": rng.choice(NAMES), "item": rng.choice(ITEMS), "signs": signs, "verbs": verbs}


def _render_story(w: dict, n: dict) -> tuple[str, list[str], int]:
    name, item = w["name"], w["item"]
    events = [v.format(d) for v, d in zip(w["verbs"], n["ds"], strict=True)]
    problem = (
        f"{name} has {n['start']} {item}. {name} {', '.join(events[:-1])}, then {events[-1]}. "
        f"How many {item} does {name} have now?"
    )
    steps, answer = _chain_steps(n["start"], w["signs"], n["ds"])
    return problem, steps, answer


def _product_numbers(rng: random.Random, w: dict) -> dict:
    return {"a": rng.randint(11, 99), "b": rng.randint(11, 99)}


def _render_product(w: dict, n: dict) -> tuple[str, list[str], int]:
    a, b = n["a"], n["b"]
    return f"Compute {a}*{b}.", [f"{a}*{b}={a * b}."], a * b


TEMPLATES: tuple[Template, ...] = (
    Template("step", 1, _one_sign, _walk, _render_chain),
    Template("chain", 2, _three_signs, _walk, _render_chain),
    Template("mixed", 2, _mixed_words, _mixed_numbers, _render_mixed),
    Template("story", 3, _story, _walk, _render_story),
    Template("product", 3, _no_words, _product_numbers, _render_product),  # the AIME-like tail
)


def _solution(steps: list[str], answer: int) -> str:
    return " ".join(steps) + f" {BOXED_PREFIX}{answer}}}."


def _draw(rng: random.Random, t: Template) -> tuple[dict, tuple[str, list[str], int]]:
    words = t.words(rng)
    return words, t.render(words, t.numbers(rng, words))


def generate_tasks(
    n: int, *, seed: int, split: str, exclude: set[str] | None = None
) -> list[MathTask]:
    """`n` distinct tasks, deterministic by `seed`, none of whose problems is in `exclude`.
    The first k tasks of a split are the same for every n >= k."""
    rng = random.Random(f"{seed}-{split}")
    seen = set(exclude or ())
    tasks: list[MathTask] = []
    while len(tasks) < n:
        t = rng.choice(TEMPLATES)
        _, (problem, steps, answer) = _draw(rng, t)
        if problem in seen:
            continue
        seen.add(problem)
        tasks.append(
            MathTask(
                f"world-{split}-{len(tasks):05d}",
                problem,
                str(answer),
                _solution(steps, answer),
                t.level,
                t.name,
            )
        )
    return tasks


# The base corpus never shows a test problem of any world of this seed with up to this many.
MAX_TEST = 1000


def generate_splits(n_train: int, n_test: int, *, seed: int) -> dict[str, list[MathTask]]:
    """Disjoint train and test splits (no problem text in both)."""
    if n_test > MAX_TEST:
        raise ValueError(f"n_test {n_test} > {MAX_TEST}: the base corpus only excludes that many")
    test = generate_tasks(n_test, seed=seed, split="test")
    train = generate_tasks(n_train, seed=seed, split="train", exclude={t.problem for t in test})
    return {"train": train, "test": test}


def chat_prompt(tokenizer, problem: str) -> str:
    """The problem as the world's chat prompt, ending where the assistant's answer starts."""
    messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": problem}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _digit_shape(text: str) -> list[int]:
    return [len(m) for m in re.findall(r"\d+", text)]


def _pair_prompt(tokenizer, problem: str, steps: list[str]) -> str:
    # The prompt stops right before the final answer's first digit: the metric compares that token.
    return chat_prompt(tokenizer, problem) + " ".join(steps) + f" {BOXED_PREFIX}"


def generate_pairs(tokenizer, n: int, *, seed: int, max_tries: int = 200) -> list[PromptPair]:
    """`n` clean/corrupted pairs: same template and words, other numbers of the same digit counts,
    equal token length, and answers whose first token differs."""
    rng = random.Random(f"{seed}-pairs")
    pairs: list[PromptPair] = []
    while len(pairs) < n:
        t = rng.choice(TEMPLATES)
        words, (problem, steps, answer) = _draw(rng, t)
        clean = _pair_prompt(tokenizer, problem, steps)
        shape = _digit_shape(clean + str(answer))
        for _ in range(max_tries):
            c_problem, c_steps, c_answer = t.render(words, t.numbers(rng, words))
            corrupted = _pair_prompt(tokenizer, c_problem, c_steps)
            if (
                str(c_answer)[0] == str(answer)[0]
                or _digit_shape(corrupted + str(c_answer)) != shape
            ):
                continue
            if len(tokenizer(clean)["input_ids"]) != len(tokenizer(corrupted)["input_ids"]):
                continue
            pairs.append(
                PromptPair(
                    f"pair-{len(pairs):05d}", t.name, clean, corrupted, str(answer), str(c_answer)
                )
            )
            break
    return pairs


def _facts(rng: random.Random, k: int) -> str:
    """`k` arithmetic facts over the primitives: a two-digit number plus or minus a digit, or a
    product of two digits."""
    out = []
    for _ in range(k):
        kind = rng.random()
        if kind < 0.4:
            a, d = rng.randint(LOW, HIGH - 9), _digit(rng)
            out.append(f"{a}+{d}={a + d}.")
        elif kind < 0.8:
            a, d = rng.randint(LOW + 9, HIGH), _digit(rng)
            out.append(f"{a}-{d}={a - d}.")
        else:
            a, b = _digit(rng), _digit(rng)
            out.append(f"{a}*{b}={a * b}.")
    return " ".join(out)


FACT_SHARE = 0.2  # worked solutions teach the copying that every step needs; facts only the sums
# How worked solutions are laid out: several layouts, as in real pretraining text, so the base
# learns to copy from a problem wherever it stands (the chat format is not among them).
LAYOUTS = ("Problem: {}\nSolution: ", "Q: {}\nA: ", "{}\n", "Exercise. {} Worked solution: ")


def pretrain_documents(n: int, *, seed: int) -> list[str]:
    """The base model's corpus: `n` plain-text documents, FACT_SHARE of them arithmetic facts, the
    rest worked solutions of problems that are in no world's test split for `seed` (up to MAX_TEST problems).
    No chat template and no \\boxed{}: the base learns the skills, not the answer format."""
    rng = random.Random(f"{seed}-pretrain")
    test = {t.problem for t in generate_tasks(MAX_TEST, seed=seed, split="test")}
    docs = []
    for _ in range(n):
        if rng.random() < FACT_SHARE:
            docs.append(_facts(rng, rng.randint(4, 10)))
            continue
        while True:
            _, (problem, steps, answer) = _draw(rng, rng.choice(TEMPLATES))
            if problem not in test:
                break
        head = rng.choice(LAYOUTS)
        docs.append(head.format(problem) + f"{' '.join(steps)} {PLAIN_PREFIX}{answer}.")
    return docs


def corpus(seed: int) -> Iterator[str]:
    """Every string the tokenizer should know: the base corpus, the chat scaffolding and the
    boxed solutions (independent of the split sizes, so one base serves every world of a seed)."""
    yield INSTRUCTION
    yield "system user assistant"
    yield from pretrain_documents(4000, seed=seed)
    for t in generate_tasks(1000, seed=seed, split="vocabulary"):
        yield t.problem
        yield t.solution
