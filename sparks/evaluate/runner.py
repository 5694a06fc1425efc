"""Evaluate a checkpoint on benchmarks: prompt with the chat template, sample, grade, summarise."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sparks.evaluate.generate import GenerationError, GenerationResult, generate
from sparks.evaluate.metrics import grade, summarise
from sparks.evaluate.spec import DEFAULT_SAMPLING, SamplingSpec
from sparks.models.loading import check_checkpoint, load_tokenizer, require_chat_template
from sparks.problems.prompts import prompt_messages


def benchmarks_for(ev, world_settings=None) -> dict[str, list[dict]]:
    """The problems of every benchmark an `EvaluationSettings` names (the embedded world is built
    from `world_settings`, or the defaults, only when `world` is evaluated without a local file)."""
    from sparks.config import WORLD, WorldSettings
    from sparks.problems.benchmarks import load_benchmark
    from sparks.world.build import world_for

    world = None
    if WORLD in ev.benchmarks and WORLD not in ev.sources:
        world = world_for(world_settings or WorldSettings())
    return {
        b: load_benchmark(b, source=ev.sources.get(b), world=world, limit=ev.limit)
        for b in ev.benchmarks
    }


METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class BenchmarkResult:
    name: str
    metrics: dict
    table: pd.DataFrame  # per sample
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> problem ids


OVERLONG = "over-long prompt"  # prompt + max_tokens over the model's context


def write_eval_dir(dest: str | Path, results: dict[str, BenchmarkResult]) -> Path:
    """The one writer of an evaluation directory, atomically (temporary name, then rename):
    `BENCHMARK.parquet` (a row per sample), `metrics.json` ({benchmark: metrics}) and
    `skipped.json` ({benchmark: {reason: problem ids}}). Its readers: `evaluated`,
    `read_eval_metrics`."""
    from sparks.files import atomic_dir

    with atomic_dir(Path(dest)) as tmp:
        for b, r in results.items():
            r.table.to_parquet(tmp / f"{b}.parquet", index=False)
        (tmp / METRICS_FILE).write_text(
            json.dumps({b: r.metrics for b, r in results.items()}, indent=2)
        )
        (tmp / "skipped.json").write_text(
            json.dumps({b: r.skipped for b, r in results.items()}, indent=2)
        )
    return Path(dest)


def evaluated(dest: str | Path) -> bool:
    """Whether `dest` holds a finished evaluation (its metrics are written last)."""
    return (Path(dest) / METRICS_FILE).is_file()


def read_eval_metrics(dest: str | Path) -> dict[str, dict]:
    """{benchmark: metrics} of the evaluation directory `dest`."""
    return json.loads((Path(dest) / METRICS_FILE).read_text())


def build_prompts(
    tokenizer, problems: list[dict], *, enable_thinking: bool | None = None
) -> list[str]:
    """Chat-template prompts with the standard instruction; `enable_thinking` reaches Qwen3-style
    templates (the paper's think on/off comparison) and is ignored by others."""
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return [
        tokenizer.apply_chat_template(
            prompt_messages(p["problem"]), tokenize=False, add_generation_prompt=True, **extra
        )
        for p in problems
    ]


class PromptTooLongError(ValueError):
    """A prompt that, with max_tokens, does not fit the model's context."""


def context_length(model_dir: str | Path) -> int | None:
    """Positions the model can attend over (vLLM's default max_model_len), if its config says."""
    import json

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return cfg.get("max_position_embeddings") or cfg.get("max_sequence_length")


def fit_context(
    tok,
    model_dir,
    benchmarks: dict[str, list[dict]],
    prompts: list[list[str]],
    max_tokens: int,
    *,
    overlong: str = "skip",
) -> tuple[dict[str, list[dict]], list[list[str]], dict[str, list[str]]]:
    """Drop (overlong="skip") or refuse ("error") problems whose prompt + max_tokens exceed the
    model's context, before any engine starts; returns what is kept and the skipped ids."""
    limit = context_length(model_dir)
    if limit is None:
        return benchmarks, prompts, {b: [] for b in benchmarks}
    kept_b, kept_p, skipped = {}, [], {}
    for (b, problems), ps in zip(benchmarks.items(), prompts, strict=True):
        lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in ps]
        over = [i for i, n in enumerate(lengths) if n + max_tokens > limit]
        if over and overlong == "error":
            i = over[0]
            raise PromptTooLongError(
                f"{b}: problem {problems[i]['id']} has a {lengths[i]}-token prompt, which with "
                f"max_tokens {max_tokens} exceeds the model's {limit} positions ({len(over)} such "
                "problems): lower max_tokens, or skip them (evaluation.overlong: skip / --overlong skip)"
            )
        skipped[b] = [problems[i]["id"] for i in over]
        keep = sorted(set(range(len(problems))) - set(over))
        if not keep:
            raise PromptTooLongError(
                f"{b}: every prompt with max_tokens {max_tokens} exceeds the model's {limit} "
                "positions: lower max_tokens or use a model with a longer context"
            )
        kept_b[b] = [problems[i] for i in keep]
        kept_p.append([ps[i] for i in keep])
    return kept_b, kept_p, skipped


def _keep_partial(out: Path, benchmarks: dict[str, list[dict]], rows: list) -> Path:
    """Grade the finished prompts' samples and write them, per benchmark, atomically."""
    from sparks.files import atomic_dir

    target = out.parent / f"{out.name}.partial"
    if target.exists():
        import shutil

        shutil.rmtree(target)  # an earlier failure's leftovers: this one has at least as much
    with atomic_dir(target) as tmp:
        start = 0
        for b, problems in benchmarks.items():
            done = rows[start : start + len(problems)]
            start += len(problems)
            if done:
                grade(problems[: len(done)], done).to_parquet(
                    tmp / f"{b}.partial.parquet", index=False
                )
    return target


def evaluate_model(
    model_dir: str | Path,
    benchmarks: dict[str, list[dict]],
    spec: SamplingSpec = DEFAULT_SAMPLING,
    *,
    backend: str = "vllm",
    enable_thinking: bool | None = None,
    overlong: str = "skip",
    keep_partial: str | Path | None = None,
    progress: bool = False,
) -> dict[str, BenchmarkResult]:
    """Sample `spec.n` answers per problem of every benchmark in one engine run, then grade.

    Problems whose prompt + max_tokens exceed the model's context are skipped and counted in
    the metrics (`skipped_overlong`), or refused with overlong="error", before the engine starts.
    If the engine dies midway, the samples it finished are graded and written to `keep_partial`
    (`<benchmark>.partial.parquet`) before the error is raised."""
    check_checkpoint(model_dir)
    tok = load_tokenizer(model_dir)
    require_chat_template(tok, model_dir)
    prompts = [
        build_prompts(tok, ps, enable_thinking=enable_thinking) for ps in benchmarks.values()
    ]
    benchmarks, prompts, skipped = fit_context(
        tok, model_dir, benchmarks, prompts, spec.max_tokens, overlong=overlong
    )
    names = list(benchmarks)
    flat = [p for ps in prompts for p in ps]
    try:
        result: GenerationResult = generate(
            model_dir, flat, spec, backend=backend, progress=progress
        )
    except GenerationError as e:
        if keep_partial is None or not e.partial:
            raise
        where = _keep_partial(Path(keep_partial), benchmarks, e.partial)
        first, _, rest = str(e).partition("\n")
        raise GenerationError(
            f"{first} ({len(e.partial)} of {len(flat)} prompts had finished: their graded samples "
            f"are kept in {where})\n{rest}",
            partial=e.partial,
        ) from e
    out, start = {}, 0
    for b, ps in zip(names, prompts, strict=True):
        rows = result.completions[start : start + len(ps)]
        start += len(ps)
        table = grade(benchmarks[b], rows)
        metrics = summarise(table) | {
            "tokens_per_second": result.generated_tokens / max(result.seconds, 1e-9),
            "skipped_overlong": len(skipped[b]),
        }
        out[b] = BenchmarkResult(b, metrics, table, {OVERLONG: skipped[b]} if skipped[b] else {})
    return out
