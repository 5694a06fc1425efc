"""GRPO reward functions: pure `(completions, **kwargs) -> list[float]`.

TRL passes extra dataset columns (here `answer`) as keyword arguments, and conversational
completions as lists of messages.
"""

from __future__ import annotations

from sparks.problems.grading import final_answer, is_correct


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else str(completion)


def correctness_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """1.0 where the last \\boxed{} answer verifies against the gold answer, else 0.0.

    >>> correctness_reward([[{"role": "assistant", "content": "4 + 3 = 7. \\\\boxed{7}."}], "\\\\boxed{8}"], answer=["7", "7"])
    [1.0, 0.0]
    """
    return [float(is_correct(_text(c), a)) for c, a in zip(completions, answer, strict=True)]


def format_reward(completions: list, **kwargs) -> list[float]:
    """0.2 for a complete, non-empty \\boxed{} answer (the format evaluation grades), else 0.0.

    >>> format_reward(["The answer is \\\\boxed{12}.", "12", "\\\\boxed{"])
    [0.2, 0.0, 0.0]
    """
    return [0.2 if final_answer(_text(c)) is not None else 0.0 for c in completions]
