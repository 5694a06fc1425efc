"""Benchmarks: AIME'24, AMC23 and the embedded world's test split, normalised to {id, problem, answer}.

By default `aime24` and `amc23` load from their public hub datasets; a local JSONL/JSON/parquet file
or directory in any of the layouts below can stand in (needed offline). Layouts met in the wild
(see shared/EVAL_NOTES.md):
    HuggingFaceH4/aime_2024      id, problem, solution, answer ("025" style strings), url, year
    math-ai/amc23                question, answer (floats such as 27.0)
    math-ai/aime24               problem, solution (the answer only inside \\boxed{})
    Qwen2.5-Math aime24/amc23    id, problem, question, answer, url
Answers are compared as numbers by math-verify, so "025" and 25, 27.0 and 27 agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparks.problems.grading import clean_gold, last_boxed
from sparks.problems.sources import DataError, read_records


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded; the message says how to supply it."""


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    hub_id: str | None  # None: built locally (the embedded world)
    split: str
    size: int | None  # problems in the official set, checked when loading from the hub


BENCHMARKS = {
    "aime24": BenchmarkSpec("aime24", "HuggingFaceH4/aime_2024", "train", 30),
    "amc23": BenchmarkSpec("amc23", "math-ai/amc23", "test", 40),
    "world": BenchmarkSpec("world", None, "test", None),
}


def _answer(r: dict) -> str | None:
    a = r.get("answer")
    if a is None and r.get("solution"):
        boxed = last_boxed(str(r["solution"]))
        # real solutions box things like \textbf{(073)} or "(C) 12": keep the value only
        a = clean_gold(boxed) if boxed is not None else None
    if a is None:
        return None
    if isinstance(a, float) and a.is_integer():
        return str(int(a))
    return str(a).strip()


def normalise_benchmark(records: list[dict], *, name: str) -> list[dict]:
    """Records as {id, problem, answer}, whatever the source layout, plus `level` / `difficulty`
    where the source has them (what a study's difficulty buckets read first)."""
    out = []
    for i, r in enumerate(records):
        problem, answer = r.get("problem", r.get("question")), _answer(r)
        if problem is None or answer is None:
            raise BenchmarkError(
                f"{name}: record {i} has no problem/question or no gradable answer (a boxed "
                "choice letter alone is not one); give it an `answer` field or fix the file"
            )
        extra = {k: r[k] for k in ("level", "difficulty") if r.get(k) not in (None, "")}
        out.append(
            {"id": f"{name}-{r.get('id', i)}", "problem": str(problem), "answer": answer} | extra
        )
    return out


def load_benchmark(
    name: str, *, source: str | Path | None = None, world=None, limit: int | None = None
) -> list[dict]:
    """The problems of benchmark `name`, from `source` if given, else its default place."""
    if name not in BENCHMARKS and source is None:
        raise BenchmarkError(
            f"unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)}, or give a local file for it"
        )
    spec = BENCHMARKS.get(name)
    if source is not None:
        try:
            records = read_records(str(source))
        except DataError as e:
            raise BenchmarkError(f"{name}: {e}") from e
    elif spec is None:  # unreachable: a name not in BENCHMARKS comes with a source
        raise BenchmarkError(f"unknown benchmark {name!r}")
    elif spec.hub_id is None:
        if world is None:
            raise BenchmarkError(
                "benchmark 'world' needs the embedded world: build it with `sparks world build`"
            )
        records = world.tasks(spec.split)
    else:
        try:
            import datasets

            records = list(datasets.load_dataset(spec.hub_id, split=spec.split))
        except (
            Exception
        ) as e:  # offline, missing cache, renamed dataset: all mean "supply it yourself"
            raise BenchmarkError(
                f"cannot load {name} from the hub ({spec.hub_id}: {type(e).__name__}); offline, pass a local copy: "
                f"--benchmark-file {name}=PATH (a .jsonl/.parquet file or directory in the hub dataset's layout)"
            ) from e
    problems = normalise_benchmark(records, name=name)[:limit]
    if not problems:
        raise BenchmarkError(
            f"{name}: the benchmark is empty ({source or (spec.hub_id if spec else '')})"
        )
    return problems
