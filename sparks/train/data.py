"""Math problems for training, from the embedded world, a local file or a hub dataset.

Every source is normalised to records `{id, problem, answer, solution?}` (AIME/AMC shape; `question`
is accepted for `problem`, as in Qwen2.5-Math's files), then shaped for a trainer:
    SFT / distill: conversational prompt-completion (loss on the completion only)
    GRPO:          conversational prompt, plus `answer` for the reward functions
"""

from __future__ import annotations

from pathlib import Path

from sparks.world.tasks import INSTRUCTION


class DataError(ValueError):
    """Training data that cannot be used; the message names the source and the fix."""


def normalise(records: list[dict], *, source: str) -> list[dict]:
    """Records as {id, problem, answer, solution}; answers become strings ("025" stays "025")."""
    out = []
    for i, r in enumerate(records):
        problem = r.get("problem", r.get("question"))
        if problem is None or r.get("answer") is None:
            raise DataError(
                f"{source}: record {i} has no problem/question or no answer; both are required"
            )
        out.append(
            {
                "id": str(r.get("id", i)),
                "problem": str(problem),
                "answer": str(r["answer"]).strip(),
                "solution": r.get("solution"),
            }
        )
    return out


def read_records(source: str) -> list[dict]:
    """Raw records from a local JSONL/JSON/parquet file or directory, or a hub dataset id."""
    import datasets

    p = Path(source)
    try:
        if p.is_dir():
            files = sorted([*p.glob("*.jsonl"), *p.glob("*.json"), *p.glob("*.parquet")])
            if not files:
                raise DataError(f"{p} holds no .jsonl, .json or .parquet files")
            return [r for f in files for r in read_records(str(f))]
        if p.suffix in (".jsonl", ".json", ".parquet"):
            if not p.is_file():
                raise DataError(f"{source}: file not found")
            if not p.read_bytes().strip():
                return []
            try:
                return list(
                    datasets.load_dataset(
                        "parquet" if p.suffix == ".parquet" else "json",
                        data_files=str(p),
                        split="train",
                    )
                )
            except Exception as e:
                raise DataError(
                    f"{source}: cannot read it ({type(e).__name__}); check that it is valid JSON lines or parquet"
                ) from e
        if p.exists() or source.startswith((".", "/")):
            raise DataError(f"{source}: unsupported file type; use .jsonl, .json or .parquet")
        return list(datasets.load_dataset(source, split="train"))
    except DataError:
        raise
    except Exception as e:  # the hub being unreachable surfaces as many exception types
        raise DataError(
            f"cannot load dataset {source!r} ({type(e).__name__}): with no hub access, pass a local "
            ".jsonl/.parquet file or directory instead"
        ) from e


def load_problems(source: str, *, world=None, max_samples: int | None = None) -> list[dict]:
    """Training problems from `source` ('world' uses `world`'s train split)."""
    if source == "world":
        if world is None:
            raise DataError("data.train is 'world' but no world was built")
        records = normalise(world.tasks("train"), source="world")
    else:
        records = normalise(read_records(source), source=source)
    records = records[:max_samples]
    if not records:
        raise DataError(f"{source}: no training problems (the dataset is empty)")
    return records


def prompt_messages(problem: str) -> list[dict]:
    """The conversation every trainer and evaluator gives the model for a problem."""
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": problem}]


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
