"""The conversation every trainer, evaluator and pair builder gives a model for a problem."""

from __future__ import annotations

from sparks.world.tasks import INSTRUCTION


def prompt_messages(problem: str) -> list[dict]:
    """The conversation every trainer and evaluator gives the model for a problem."""
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": problem}]
