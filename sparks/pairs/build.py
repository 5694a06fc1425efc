"""Build clean/corrupted pairs for a model from math problems, in its own tokens.

1. Problems come from the sources training and evaluation use: a benchmark name (`aime24`,
   `amc23`, `world`, with local files standing in for the hub), a local JSONL/parquet file or a
   hub dataset id, normalised the same way.
2. Each problem becomes the evaluation prompt: the chat template with the standard instruction.
3. A mode turns prompts into token pairs of equal length:
   - `numbers`: the corrupted prompt is the problem with every number redrawn with the same digit
     count, kept only if its token count under this tokenizer is unchanged (else retried, then
     skipped and counted). One model. No answer tokens: the metric is `kl` (last position).
   - `contrast` (the paper's construction): the prompt plus an answer prefix sampled from model A
     (clean) against the same prompt plus model B's prefix (corrupted), both cut to the shorter
     prefix. Each model samples from its own chat template (a teacher may have another); the
     prefix text is then placed after A's prompt and tokenized with A's tokenizer. The metric is
     `kl_prefix`: the KL over every answer-prefix position, where the two inputs differ (the last
     position alone sees only where the prefixes were cut).
   - `file`: text pairs from a JSONL file (the world's or hand-made), tokenized and checked.
4. Written atomically as JSON lines, every pair with the tokenizer's fingerprint, so a file built
   for another tokenizer is refused wherever it is used.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from sparks.circuits.batches import PairsError, encode_pairs, load_pairs, tokenizer_fingerprint
from sparks.files import atomic_write_text

MODES = ("numbers", "contrast", "file")
NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class PairsReport:
    path: Path
    mode: str
    written: int
    skipped: dict[str, int] = field(default_factory=dict)
    tokenizer: str = ""

    def line(self) -> str:
        skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.skipped.items() if v)
        return (
            f"{self.written} {self.mode} pairs written to {self.path} (tokenizer {self.tokenizer})"
            + (f"; skipped: {skipped}" if skipped else "")
        )


def load_problems(
    sources: list[str], *, world=None, files: dict[str, str] | None = None
) -> list[dict]:
    """{id, problem, answer} records from benchmark names, local files or hub ids, in order."""
    from sparks.problems.benchmarks import BENCHMARKS, load_benchmark, normalise_benchmark
    from sparks.problems.sources import read_records

    files = files or {}
    out = []
    for src in sources:
        if src in BENCHMARKS or src in files:
            out += load_benchmark(src, source=files.get(src), world=world)
        else:
            out += normalise_benchmark(read_records(src), name=Path(src).stem or src)
    if not out:
        raise PairsError(f"no problems in {', '.join(sources)}: the source is empty")
    return out


def _prompt(tokenizer, problem: str, enable_thinking: bool | None = None) -> str:
    from sparks.evaluate.runner import build_prompts

    return build_prompts(tokenizer, [{"problem": problem}], enable_thinking=enable_thinking)[0]


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _redraw(text: str, rng: random.Random) -> str:
    def one(m: re.Match) -> str:
        digits = m.group()
        if len(digits) == 1:
            return str(rng.choice([d for d in range(10) if str(d) != digits]))
        return str(rng.randint(10 ** (len(digits) - 1), 10 ** len(digits) - 1))

    return NUMBER.sub(one, text)


def numbers_pairs(
    tokenizer,
    problems: list[dict],
    *,
    n: int,
    seed: int = 0,
    tries: int = 20,
    enable_thinking: bool | None = None,
) -> tuple[list[dict], dict[str, int]]:
    """Pairs whose corrupted prompt has other numbers and the same token count; skipped counts."""
    rng = random.Random(f"{seed}-numbers")
    pairs: list[dict] = []
    skipped = {"without_numbers": 0, "length_changed": 0}
    for p in problems:
        if len(pairs) == n:
            break
        if not NUMBER.search(p["problem"]):
            skipped["without_numbers"] += 1
            continue
        clean = _ids(tokenizer, _prompt(tokenizer, p["problem"], enable_thinking))
        for _ in range(tries):
            other = _redraw(p["problem"], rng)
            corrupt = _ids(tokenizer, _prompt(tokenizer, other, enable_thinking))
            if len(corrupt) == len(clean) and corrupt != clean:
                pairs.append(
                    {
                        "id": f"numbers-{p['id']}",
                        "problem_id": p["id"],
                        "clean": tokenizer.decode(clean),
                        "corrupted": tokenizer.decode(corrupt),
                        "clean_ids": clean,
                        "corrupted_ids": corrupt,
                    }
                )
                break
        else:
            skipped["length_changed"] += 1
    return pairs, skipped


def contrast_pairs(
    model: str,
    reference: str,
    tokenizer,
    problems: list[dict],
    *,
    n: int,
    prefix_tokens: int = 64,
    temperature: float = 0.6,
    seed: int = 0,
    backend: str = "vllm",
    enable_thinking: bool | None = None,
) -> tuple[list[dict], dict[str, int]]:
    """Prompt + `model`'s sampled prefix (clean) against prompt + `reference`'s (corrupted)."""
    from sparks.evaluate.generate import SamplingSpec, generate
    from sparks.models.loading import load_tokenizer

    problems = problems[:n]
    spec = SamplingSpec(n=1, temperature=temperature, max_tokens=prefix_tokens, seed=seed)
    prefixes = {}
    for role, path in (("clean", model), ("corrupted", reference)):
        tok = tokenizer if path == model else load_tokenizer(path)
        prompts = [_prompt(tok, p["problem"], enable_thinking) for p in problems]
        rows = generate(path, prompts, spec, backend=backend).completions
        prefixes[role] = [row[0].text for row in rows]
    pairs, skipped = [], {"empty_prefix": 0, "identical_prefixes": 0}
    for p, a, b in zip(problems, prefixes["clean"], prefixes["corrupted"], strict=True):
        prompt = _ids(tokenizer, _prompt(tokenizer, p["problem"], enable_thinking))
        pa, pb = _ids(tokenizer, a)[:prefix_tokens], _ids(tokenizer, b)[:prefix_tokens]
        cut = min(len(pa), len(pb))
        if cut == 0:
            skipped["empty_prefix"] += 1
            continue
        if pa[:cut] == pb[:cut]:
            skipped["identical_prefixes"] += 1
            continue
        pairs.append(
            {
                "id": f"contrast-{p['id']}",
                "problem_id": p["id"],
                "clean": tokenizer.decode(prompt + pa[:cut]),
                "corrupted": tokenizer.decode(prompt + pb[:cut]),
                "clean_ids": prompt + pa[:cut],
                "corrupted_ids": prompt + pb[:cut],
                "span_start": len(prompt),
                "clean_from": str(model),
                "corrupted_from": str(reference),
                "prefix_tokens": {"clean": len(pa), "corrupted": len(pb)},
                "truncated_to": cut,
            }
        )
    return pairs, skipped


def file_pairs(tokenizer, path: str | Path) -> list[dict]:
    """A text (or token) pairs file, tokenized with this tokenizer and checked."""
    pairs = load_pairs(path)
    encode_pairs(tokenizer, pairs, source=str(path))  # refuses unequal lengths, other tokenizers
    out = []
    for p in pairs:
        rec = dict(p)
        rec.setdefault("clean_ids", _ids(tokenizer, p["clean"]))
        rec.setdefault("corrupted_ids", _ids(tokenizer, p["corrupted"]))
        out.append(rec)
    return out


def check_request(mode: str, sources: list[str] | None, reference: str | None) -> None:
    """Refuse a pairs request that cannot work, before anything (a world, a model) is loaded."""
    if mode not in MODES:
        raise PairsError(f"unknown pairs mode {mode!r}: use one of {', '.join(MODES)}")
    if not sources:
        raise PairsError(
            "no source for the pairs: name a benchmark (aime24, amc23, world), a file or a dataset"
        )
    if mode == "contrast" and not reference:
        raise PairsError(
            "mode contrast needs a reference model (B, whose answer prefixes are the corrupted "
            "input): pass --reference MODEL"
        )


def build_pairs(
    model: str,
    out: str | Path,
    *,
    mode: str = "numbers",
    sources: list[str] | None = None,
    files: dict[str, str] | None = None,
    reference: str | None = None,
    n: int = 64,
    prefix_tokens: int = 64,
    temperature: float = 0.6,
    seed: int = 0,
    backend: str = "vllm",
    world=None,
    tokenizer=None,
    enable_thinking: bool | None = None,
    levels: list[str] | None = None,
) -> PairsReport:
    """Build pairs for `model` and write them to `out` (atomically); every input is checked first.
    `enable_thinking` reaches Qwen3-style chat templates (think on/off), as in evaluation;
    `levels` keeps only problems whose level (or difficulty) is one of them."""
    from sparks.models.loading import (
        check_checkpoint,
        is_local,
        load_tokenizer,
        require_chat_template,
    )

    check_request(mode, sources, reference)
    assert sources  # check_request refuses none
    if mode == "contrast" and reference and is_local(reference):
        check_checkpoint(reference)
    tokenizer = tokenizer or load_tokenizer(model)
    if mode != "file":
        require_chat_template(tokenizer, model)
    skipped: dict[str, int] = {}
    if mode == "file":
        if len(sources) != 1:
            raise PairsError("mode file takes one pairs file as its source")
        pairs = file_pairs(tokenizer, sources[0])[:n]
    else:
        problems = load_problems(sources, world=world, files=files)
        if levels is not None:
            problems = [
                p for p in problems if str(p.get("level", p.get("difficulty"))) in set(levels)
            ]
            if not problems:
                raise PairsError(
                    f"no problem of {', '.join(sources)} has a level in {levels}: check "
                    "snapshot.pairs levels against the problems' level field"
                )
        if mode == "numbers":
            pairs, skipped = numbers_pairs(
                tokenizer, problems, n=n, seed=seed, enable_thinking=enable_thinking
            )
        else:
            assert reference  # check_request refuses contrast without one
            pairs, skipped = contrast_pairs(
                model,
                reference,
                tokenizer,
                problems,
                n=n,
                prefix_tokens=prefix_tokens,
                temperature=temperature,
                seed=seed,
                backend=backend,
                enable_thinking=enable_thinking,
            )
    if not pairs:
        raise PairsError(
            f"no {mode} pairs could be built from {', '.join(sources)} for {model} "
            f"(skipped: {skipped}); try another source or mode"
        )
    fp = tokenizer_fingerprint(tokenizer)
    lines = [json.dumps(p | {"mode": mode, "tokenizer": fp}, ensure_ascii=False) for p in pairs]
    out = Path(out)
    atomic_write_text(out, "\n".join(lines) + "\n")
    return PairsReport(out, mode, len(pairs), skipped, fp)


def pairs_for_run(
    cfg, base_model: str, out_dir: Path, *, world=None, tokenizer=None, name: str = ""
) -> Path:
    """The run's pairs file of pair set `name`: `out_dir/pairs.jsonl` for the primary set,
    `out_dir/pairs-NAME.jsonl` for the others; built once as `cfg.snapshot.pairs` says (every
    save is then measured on the same inputs), reused as it is afterwards."""
    sets = cfg.snapshot.pair_sets()
    primary = name == next(iter(sets))
    target = Path(out_dir) / ("pairs.jsonl" if primary else f"pairs-{name}.jsonl")
    if target.is_file():
        return target
    ps, ev = sets[name], cfg.evaluation
    mode, sources, reference = cfg.resolved_pairs(ps)
    if mode == "file" and not sources:  # mode auto on the world model: the world's own pairs
        sources = [str(world.pairs_path)]
    build_pairs(
        base_model,
        target,
        mode=mode,
        sources=sources,
        files=dict(ev.sources),
        reference=reference,
        n=ps.n,
        prefix_tokens=ps.prefix_tokens,
        seed=ps.seed,
        backend=ps.backend,
        world=world,
        tokenizer=tokenizer,
        levels=ps.levels,
    )
    return target
