"""Think on/off: one model's circuit and accuracy with `enable_thinking` on and off.

For each of on and off, under `out/{on,off}/` (each step skipped when its output is there):
1. pairs built from the same problems with that template (`pairs.jsonl`);
2. a circuit snapshot on those pairs (`circuit/`);
3. an evaluation on the same benchmarks and sampling (`eval/metrics.json` and per-sample tables).
Templates without `enable_thinking` render both alike: that is refused, not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sparks.analysis.series import CompareError
from sparks.circuits import snapshot_checkpoint
from sparks.circuits.snapshot import read_snapshot
from sparks.config import WORLD, ThinkSettings, WorldSettings
from sparks.evaluate.runner import (
    benchmarks_for,
    build_prompts,
    evaluate_model,
    evaluated,
    read_eval_metrics,
    write_eval_dir,
)
from sparks.files import read_jsonl
from sparks.models.loading import load_tokenizer
from sparks.pairs import build_pairs
from sparks.track.ledger import head_table
from sparks.world.build import world_for

MODES = {"on": True, "off": False}


@dataclass(frozen=True)
class ThinkResult:
    model: str
    tables: dict[str, pd.DataFrame]  # on / off -> head table
    evals: dict[str, dict]  # on / off -> {benchmark: metrics}
    problems: dict[str, list[str]]  # on / off -> problem ids of the pairs


def check_template(model: str) -> None:
    """Refuse a chat template that ignores enable_thinking (on and off would be one prompt)."""
    tok = load_tokenizer(model)
    p = [{"problem": "1 + 1"}]
    if build_prompts(tok, p, enable_thinking=True) == build_prompts(tok, p, enable_thinking=False):
        raise CompareError(
            f"{model}: its chat template ignores enable_thinking (on and off give the same "
            "prompt): think on/off needs a Qwen3-style template"
        )


def run_think(settings: ThinkSettings, out: Path, *, progress=print) -> ThinkResult:
    """Pairs, snapshot and evaluation with thinking on and with thinking off."""
    ev, ps, s = settings.evaluation, settings.pairs, settings.snapshot
    sources = ps.sources or list(ev.benchmarks)
    needs_world = settings.model == WORLD or (WORLD in sources and WORLD not in ev.sources)
    world = world_for(WorldSettings()) if needs_world else None
    model = str(world.model_dir) if world and settings.model == WORLD else settings.model
    check_template(model)
    tables, evals, problems = {}, {}, {}
    for mode, flag in MODES.items():
        d = out / mode
        d.mkdir(parents=True, exist_ok=True)
        pairs = d / "pairs.jsonl"
        if not pairs.is_file():
            progress(f"[sparks] think {mode}: building {ps.mode} pairs from {', '.join(sources)}")
            build_pairs(
                model,
                pairs,
                mode=ps.mode,
                sources=sources,
                files=dict(ev.sources),
                reference=ps.reference,
                n=ps.n,
                prefix_tokens=ps.prefix_tokens,
                seed=ps.seed,
                backend=ps.backend,
                world=world,
                enable_thinking=flag,
            )
        problems[mode] = [p.get("problem_id", p["id"]) for p in read_jsonl(pairs)]
        if not (d / "circuit").exists():
            progress(f"[sparks] think {mode}: circuit snapshot")
            snapshot_checkpoint(
                model,
                pairs,
                d / "circuit",
                s,
                dtype=settings.dtype,
                progress=False,
            )
        tables[mode] = head_table(read_snapshot(d / "circuit"))
        if ev.enabled:
            if not evaluated(d / "eval"):
                progress(f"[sparks] think {mode}: evaluating on {', '.join(ev.benchmarks)}")
                results = evaluate_model(
                    model,
                    benchmarks_for(ev),
                    ev.sampling(),
                    backend=ev.backend,
                    enable_thinking=flag,
                    overlong=ev.overlong,
                )
                write_eval_dir(d / "eval", results)
            evals[mode] = read_eval_metrics(d / "eval")
    common = set(problems["on"]) & set(problems["off"])
    if not common:
        raise CompareError(
            f"think on and off pairs share no problem ({out}): use more pairs (think.pairs.n)"
        )
    return ThinkResult(model, tables, evals, problems)
