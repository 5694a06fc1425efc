"""Evaluate a checkpoint on benchmarks: prompt with the chat template, sample, grade, summarise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sparks.evaluate.generate import GenerationResult, SamplingSpec, generate
from sparks.evaluate.metrics import grade, summarise
from sparks.models import check_checkpoint, load_tokenizer
from sparks.train.data import prompt_messages


def sampling_for(ev) -> SamplingSpec:
    """The SamplingSpec an `EvaluationSettings` describes."""
    return SamplingSpec(
        n=ev.n,
        temperature=ev.temperature,
        top_p=ev.top_p,
        max_tokens=ev.max_tokens,
        seed=ev.seed,
        tensor_parallel_size=ev.tensor_parallel_size,
        gpu_memory_utilization=ev.gpu_memory_utilization,
    )


def benchmarks_for(ev, world_settings=None) -> dict[str, list[dict]]:
    """The problems of every benchmark an `EvaluationSettings` names (the embedded world is built
    from `world_settings`, or the defaults, only when `world` is evaluated without a local file)."""
    from sparks.config import WORLD, WorldSettings
    from sparks.evaluate.benchmarks import load_benchmark
    from sparks.world.build import world_for

    world = None
    if WORLD in ev.benchmarks and WORLD not in ev.sources:
        world = world_for(world_settings or WorldSettings())
    return {
        b: load_benchmark(b, source=ev.sources.get(b), world=world, limit=ev.limit)
        for b in ev.benchmarks
    }


@dataclass(frozen=True)
class BenchmarkResult:
    name: str
    metrics: dict
    table: pd.DataFrame  # per sample


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


def evaluate_model(
    model_dir: str | Path,
    benchmarks: dict[str, list[dict]],
    spec: SamplingSpec = SamplingSpec(),
    *,
    backend: str = "vllm",
    enable_thinking: bool | None = None,
    progress: bool = False,
) -> dict[str, BenchmarkResult]:
    """Sample `spec.n` answers per problem of every benchmark in one engine run, then grade."""
    check_checkpoint(model_dir)
    tok = load_tokenizer(model_dir)
    names = list(benchmarks)
    prompts = [build_prompts(tok, benchmarks[b], enable_thinking=enable_thinking) for b in names]
    result: GenerationResult = generate(
        model_dir, [p for ps in prompts for p in ps], spec, backend=backend, progress=progress
    )
    out, start = {}, 0
    for b, ps in zip(names, prompts, strict=True):
        rows = result.completions[start : start + len(ps)]
        start += len(ps)
        table = grade(benchmarks[b], rows)
        metrics = summarise(table) | {
            "tokens_per_second": result.generated_tokens / max(result.seconds, 1e-9)
        }
        out[b] = BenchmarkResult(b, metrics, table)
    return out
