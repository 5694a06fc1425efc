"""Synthetic math problems in the AIME/AMC record shape, and clean/corrupted pairs for attribution.

Every task is `{id, problem, answer, solution, level}`; the solution reasons step by step and ends
in `\\boxed{answer}`. Three levels, each a family of templates:

1. multi-operand addition with carries            "Compute 47 + 85 + 23."
2. mixed operations                               "Compute 12 * 7 - 15."
3. two-step word problems                         "Ava has 23 pens. She buys 4 boxes with ..."

A template draws its words and its numbers separately, so a corrupted twin keeps the words and
redraws numbers of the same digit counts: with digit-level tokenization the two prompts then have
equal token length, which EAP-IG needs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
BOXED_PREFIX = "The answer is \\boxed{"

NAMES = ("Ava", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Juno")
ITEMS = ("apples", "pens", "stamps", "coins", "books", "shells", "cards", "beads")


@dataclass(frozen=True)
class MathTask:
    """One problem in the AIME/AMC record shape."""

    id: str
    problem: str
    answer: str
    solution: str
    level: int

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


# A template: words(rng) -> dict, numbers(rng) -> dict, render(words, numbers) -> (problem, steps, answer)
@dataclass(frozen=True)
class Template:
    name: str
    level: int
    words: Callable[[random.Random], dict]
    numbers: Callable[[random.Random], dict]
    render: Callable[[dict, dict], tuple[str, list[str], int]]


def _no_words(rng: random.Random) -> dict:
    return {}


def _person(rng: random.Random) -> dict:
    name = rng.choice(NAMES)
    return {"name": name, "item": rng.choice(ITEMS)}


def _add_numbers(rng: random.Random) -> dict:
    k = rng.choice((3, 4))
    return {"xs": [rng.randint(10, 99) for _ in range(k)]}


def _render_add(w: dict, n: dict) -> tuple[str, list[str], int]:
    xs = n["xs"]
    steps, total = [], xs[0]
    for x in xs[1:]:
        steps.append(f"{total} + {x} = {total + x}.")
        total += x
    return f"Compute {' + '.join(map(str, xs))}.", steps, total


def _mixed_numbers(rng: random.Random) -> dict:
    a, b = rng.randint(2, 19), rng.randint(2, 9)
    return {"a": a, "b": b, "c": rng.randint(1, a * b - 1), "op": rng.choice("+-")}


def _render_mixed(w: dict, n: dict) -> tuple[str, list[str], int]:
    a, b, c, op = n["a"], n["b"], n["c"], n["op"]
    ab = a * b
    ans = ab + c if op == "+" else ab - c
    return f"Compute {a} * {b} {op} {c}.", [f"{a} * {b} = {ab}.", f"{ab} {op} {c} = {ans}."], ans


def _buy_numbers(rng: random.Random) -> dict:
    return {"a": rng.randint(5, 60), "b": rng.randint(2, 9), "c": rng.randint(2, 12)}


def _render_buy(w: dict, n: dict) -> tuple[str, list[str], int]:
    a, b, c = n["a"], n["b"], n["c"]
    name, item = w["name"], w["item"]
    problem = (
        f"{name} has {a} {item}. {name} buys {b} boxes with {c} {item} in each box. "
        f"How many {item} does {name} have now?"
    )
    return problem, [f"{b} * {c} = {b * c}.", f"{a} + {b * c} = {a + b * c}."], a + b * c


def _share_numbers(rng: random.Random) -> dict:
    b = rng.randint(2, 9)
    return {"a": rng.randint(2, 12) * b, "b": b, "c": rng.randint(1, 30)}


def _render_share(w: dict, n: dict) -> tuple[str, list[str], int]:
    a, b, c = n["a"], n["b"], n["c"]
    name, item = w["name"], w["item"]
    problem = (
        f"{name} shares {a} {item} equally among {b} friends. Then each friend gets {c} more "
        f"{item}. How many {item} does each friend have?"
    )
    return problem, [f"{a} / {b} = {a // b}.", f"{a // b} + {c} = {a // b + c}."], a // b + c


TEMPLATES: tuple[Template, ...] = (
    Template("add", 1, _no_words, _add_numbers, _render_add),
    Template("mixed", 2, _no_words, _mixed_numbers, _render_mixed),
    Template("buy", 3, _person, _buy_numbers, _render_buy),
    Template("share", 3, _person, _share_numbers, _render_share),
)


def _solution(steps: list[str], answer: int) -> str:
    return " ".join(steps) + f" {BOXED_PREFIX}{answer}}}."


def generate_tasks(
    n: int, *, seed: int, split: str, exclude: set[str] | None = None
) -> list[MathTask]:
    """`n` distinct tasks, deterministic by `seed`, none of whose problems is in `exclude`."""
    rng = random.Random(f"{seed}-{split}")
    seen = set(exclude or ())
    tasks: list[MathTask] = []
    while len(tasks) < n:
        t = rng.choice(TEMPLATES)
        problem, steps, answer = t.render(t.words(rng), t.numbers(rng))
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
            )
        )
    return tasks


def generate_splits(n_train: int, n_test: int, *, seed: int) -> dict[str, list[MathTask]]:
    """Disjoint train and test splits (no problem text in both)."""
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
        words = t.words(rng)
        problem, steps, answer = t.render(words, t.numbers(rng))
        clean = _pair_prompt(tokenizer, problem, steps)
        shape = _digit_shape(clean + str(answer))
        for _ in range(max_tries):
            c_problem, c_steps, c_answer = t.render(words, t.numbers(rng))
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


def corpus(tasks: list[MathTask]) -> Iterator[str]:
    """Every string the tokenizer should know: tasks, the instruction, the chat scaffolding."""
    yield INSTRUCTION
    yield "system user assistant"
    for t in tasks:
        yield t.problem
        yield t.solution
