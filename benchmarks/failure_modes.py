"""Failure-mode time on long responses: a study of 5,000 responses of about 3,000 tokens each
(R1-style `<think>` prose with LaTeX equations; a fifth of them loop, some with a slip). Prints
the milliseconds per response of each phase (grading, loop search, equations) and the total, so
that a study's classification time is known before it runs on real outputs.

    .venv/bin/python benchmarks/failure_modes.py [--responses 5000] [--tokens 3000]

Tokens are counted as the words and symbols the loop search reads (about one model token each).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparks.problems.grading import is_correct  # noqa: E402
from sparks.studies.equations import equations  # noqa: E402
from sparks.studies.failures import _LOOP_TOKEN, MODES, classify, locate_loop  # noqa: E402

SENTENCES = [
    "Okay, so we need to find the number of ordered pairs that satisfy the condition.",
    "Let me think about the case where $a$ is even and $b$ is odd.",
    "Then $a + b$ is odd, so the product $ab$ is even.",
    "Hmm, wait, I should double-check the boundary values before going on.",
    "Alternatively, we could count the complement and subtract it from the total.",
    "我们再检查一下这个结果是否正确。",
]


def response(rng: random.Random, tokens: int) -> tuple[str, str]:
    """One long response and its gold answer."""
    parts, count = ["<think>\n"], 0
    looping = rng.random() < 0.2
    while count < tokens:
        if looping and count > tokens // 2:
            part = "Wait, let me recompute the sum of the first two terms again. "
        elif rng.random() < 0.4:
            a, b = rng.randint(10, 9999), rng.randint(2, 99)
            c = a * b + (rng.random() < 0.02)  # a rare slip
            part = f"So $\\frac{{{a * b}}}{{{b}}} = {a}$ and ${a:,} \\times {b} = {c:,}$. "
        else:
            part = rng.choice(SENTENCES) + " "
        parts.append(part)
        count += len(_LOOP_TOKEN.findall(part))
    gold = str(rng.randint(1, 999))
    answer = gold if rng.random() < 0.3 else str(int(gold) + 1)
    parts.append(f"\n</think>\nThe answer is $\\boxed{{{answer}}}$.")
    return "".join(parts), gold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--responses", type=int, default=5000)
    ap.add_argument("--tokens", type=int, default=3000)
    args = ap.parse_args()
    rng = random.Random(0)
    data = [response(rng, args.tokens) for _ in range(args.responses)]
    mean_tokens = sum(len(_LOOP_TOKEN.findall(r)) for r, _ in data) / len(data)
    phases = {
        "grading": lambda r, g: is_correct(r, g),
        "loop search": lambda r, g: locate_loop(r),
        "equations": lambda r, g: equations(r),
    }
    print(f"{len(data)} responses, {mean_tokens:.0f} tokens each on average")
    for name, phase in phases.items():
        t = time.perf_counter()
        for r, g in data:
            phase(r, g)
        ms = (time.perf_counter() - t) * 1000 / len(data)
        print(f"  {name:<12} {ms:7.2f} ms per response")
    t = time.perf_counter()
    found = [classify(r, g) for r, g in data]
    total = time.perf_counter() - t
    counts = {m: sum(f.mode == m for f in found) for m in MODES}
    print(f"  {'classify':<12} {total * 1000 / len(data):7.2f} ms per response "
          f"({total:.1f} s for the study)")  # fmt: skip
    print("  modes: " + ", ".join(f"{m} {n}" for m, n in counts.items()))


if __name__ == "__main__":
    main()
