"""Distillation data: a teacher's own solutions, kept where they are correct (rejection sampling).

It lives with evaluation because it is sampling and grading: the teacher answers every training
problem once with the run's evaluation sampling settings, and math-verify keeps the correct ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from sparks.config import EvaluationSettings
from sparks.evaluate.generate import generate
from sparks.files import atomic_write_text, read_jsonl
from sparks.models.loading import load_tokenizer
from sparks.problems.grading import is_correct
from sparks.problems.prompts import prompt_messages


def teacher_solutions(
    teacher: str, records: list[dict], ev: EvaluationSettings, cache: Path
) -> list[dict]:
    """`records` with the teacher's correct solutions as `solution`, cached in `cache` (a rerun
    does not sample again)."""
    if cache.is_file():
        return read_jsonl(cache)
    teacher_tok = load_tokenizer(teacher)
    prompts = [
        teacher_tok.apply_chat_template(
            prompt_messages(r["problem"]), tokenize=False, add_generation_prompt=True
        )
        for r in records
    ]
    spec = ev.sampling(n=1)  # one solution per problem, kept if correct
    result = generate(teacher, prompts, spec, backend=ev.backend)
    kept = [
        r | {"solution": row[0].text}
        for r, row in zip(records, result.completions, strict=True)
        if is_correct(row[0].text, r["answer"])
    ]
    if not kept:
        raise ValueError(
            f"teacher {teacher} solved none of {len(records)} problems: nothing to distill; "
            "use a stronger teacher or more max_tokens"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, "".join(json.dumps(r) + "\n" for r in kept))
    return kept
