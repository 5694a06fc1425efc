"""Math problems from the embedded world, a local file or a hub dataset (training data; the
benchmarks read their files through `read_records` too).

Every source is normalised to records `{id, problem, answer, solution?}` (AIME/AMC shape; `question`
is accepted for `problem`, as in Qwen2.5-Math's files), then shaped for a trainer. Layouts met:
    AIME/AMC/world      id, problem (or question), answer, solution
    openai/gsm8k        question, answer = "<reasoning>\n#### 72": the answer is what follows
                        ####; the solution is the reasoning ending in \boxed{72}
    open-r1/OpenR1-Math-220k   problem, answer, solution, generations (R1's traces),
                        correctness_math_verify: `solutions: generation` takes the first trace
                        math-verify marked correct (rows without one are dropped)
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Training data that cannot be used; the message names the source and the fix."""


def _gsm8k(answer: str) -> tuple[str, str]:
    """GSM8K's "<reasoning> #### 72" -> ("72", reasoning ending in \\boxed{72})."""
    reasoning, _, final = answer.rpartition("####")
    final = final.strip().replace(",", "")
    return final, f"{reasoning.strip()}\nThe answer is \\boxed{{{final}}}."


def _r1_generation(r: dict) -> str | None:
    gens, ok = r.get("generations") or [], r.get("correctness_math_verify") or []
    return next((g for g, c in zip(gens, ok, strict=False) if c), None)


def normalise(records: list[dict], *, source: str, solutions: str = "solution") -> list[dict]:
    """Records as {id, problem, answer, solution}; answers become strings ("025" stays "025").

    `solutions`: "solution" takes the record's solution; "generation" the first generation
    marked correct (OpenR1-Math's R1 traces), dropping records that have none."""
    out = []
    for i, r in enumerate(records):
        problem, answer, solution = (
            r.get("problem", r.get("question")),
            r.get("answer"),
            r.get("solution"),
        )
        if isinstance(answer, str) and "####" in answer and solution is None:
            answer, solution = _gsm8k(answer)
        if problem is None or answer is None:
            raise DataError(
                f"{source}: record {i} has no problem/question or no answer; both are required"
            )
        if solutions == "generation":
            solution = _r1_generation(r)
            if solution is None:
                continue
        out.append(
            {
                "id": str(r.get("id", r.get("uuid", i))),
                "problem": str(problem),
                "answer": str(answer).strip(),
                "solution": solution,
            }
        )
    return out


def read_records(source: str, *, subset: str | None = None, split: str = "train") -> list[dict]:
    """Raw records from a local JSONL/JSON/parquet file or directory, or a hub dataset id (with
    its `subset`, e.g. gsm8k's "main", and `split`)."""
    import datasets

    datasets.disable_progress_bars()  # a bar per local file is noise beside sparks' own lines
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
        return list(datasets.load_dataset(source, subset, split=split))
    except DataError:
        raise
    except Exception as e:  # the hub being unreachable surfaces as many exception types
        raise DataError(
            f"cannot load dataset {source!r} ({type(e).__name__}): with no hub access, pass a local "
            ".jsonl/.parquet file or directory instead"
        ) from e


def load_problems(
    source: str, *, world=None, max_samples: int | None = None, data=None
) -> list[dict]:
    """Training problems from `source` ('world' uses `world`'s train split); `data` (DataSettings)
    gives a hub dataset's subset and split and where solutions come from."""
    solutions = getattr(data, "solutions", "solution")
    if source == "world":
        if world is None:
            raise DataError("data.train is 'world' but no world was built")
        records = normalise(world.tasks("train"), source="world")
    else:
        raw = read_records(
            source, subset=getattr(data, "subset", None), split=getattr(data, "split", "train")
        )
        records = normalise(raw, source=source, solutions=solutions)
    records = records[:max_samples]
    if not records:
        raise DataError(f"{source}: no training problems (the dataset is empty)")
    return records
