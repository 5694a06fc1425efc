"""Training problems shaped for a trainer (problems come from `sparks.problems.sources`):

SFT / distill: conversational prompt-completion (loss on the completion only)
GRPO:          conversational prompt, plus `answer` for the reward functions
"""

from __future__ import annotations

from sparks.problems.prompts import prompt_messages
from sparks.problems.sources import DataError


def sft_dataset(records: list[dict]):
    """Prompt-completion conversations for SFTTrainer; records need a `solution`."""
    import datasets

    rows = [r for r in records if r.get("solution")]
    if not rows:
        raise DataError("SFT needs solutions: none of the training records has a `solution`")
    return datasets.Dataset.from_list(
        [
            {
                "prompt": prompt_messages(r["problem"]),
                "completion": [{"role": "assistant", "content": r["solution"]}],
            }
            for r in rows
        ]
    )


def grpo_dataset(records: list[dict]):
    """Prompts with their gold answers for GRPOTrainer (the answer reaches the reward functions)."""
    import datasets

    return datasets.Dataset.from_list(
        [{"prompt": prompt_messages(r["problem"]), "answer": r["answer"]} for r in records]
    )
