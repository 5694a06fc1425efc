"""Evaluation from the command line: `eval` (one checkpoint), `evaluate-checkpoints` (every save
of a run, fanned out over Dask), `ablate` (an edited checkpoint, or a whole ablation study)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import typer

from sparks.cli.app import app
from sparks.cli.common import (
    ADDRESS,
    BENCHMARK_FILE,
    WORKERS,
    WORLD_DIR,
    benchmark_files,
    cluster_of,
    collect,
    world_of,
)
from sparks.cli.options import Args, field_option
from sparks.config import AblationConfig, EvaluationSettings

EV = EvaluationSettings
# `sparks eval` is for real benchmarks, whose reasoning needs room: 2048 new tokens, not the 96 a
# run config's evaluation gives the embedded world's short answers
CLI_MAX_TOKENS = 2048

BENCHMARK = typer.Option(
    None, "--benchmark", metavar="NAME", help="aime24, amc23 or world; repeatable"
)
N = field_option(EV, "n", "--n")
TEMPERATURE = field_option(EV, "temperature", "--temperature")
TOP_P = field_option(EV, "top_p", "--top-p")
MAX_TOKENS = field_option(
    EV, "max_tokens", "--max-tokens", default=CLI_MAX_TOKENS,
    help="max new tokens per sample (a run config's default is 96, for the world's short answers)",
)  # fmt: skip
SEED = field_option(EV, "seed", "--seed")
LIMIT = field_option(EV, "limit", "--limit")
BACKEND = field_option(EV, "backend", "--backend")
OVERLONG = field_option(EV, "overlong", "--overlong")
THINKING = typer.Option(None, "--enable-thinking", help="Qwen3-style templates only")
RESULTS = typer.Option(
    None, "--results", metavar="DIR", help="write per-problem tables and metrics here"
)


def _evaluation(args: Args, names: list[str], sources: dict[str, str]) -> EvaluationSettings:
    """The evaluation the sampling flags describe, on benchmarks `names`."""
    return EvaluationSettings(
        benchmarks=names, sources=sources, limit=args.limit, n=args.n,
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
        seed=args.seed, backend=args.backend, overlong=args.overlong,
    )  # fmt: skip


def _evaluate(model_dir: str, args: Args) -> dict:
    from sparks.evaluate.runner import evaluate_model, write_eval_dir
    from sparks.models.loading import check_checkpoint, load_tokenizer, require_chat_template
    from sparks.problems.benchmarks import load_benchmark

    check_checkpoint(model_dir)
    require_chat_template(load_tokenizer(model_dir), model_dir)
    names = args.benchmark or args.default_benchmarks
    files = benchmark_files(args, names)
    world = None
    if "world" in names and "world" not in files:
        world = world_of(args)
    problems = {
        b: load_benchmark(b, source=files.get(b), world=world, limit=args.limit) for b in names
    }
    spec = _evaluation(args, names, files).sampling()
    thinking = None if args.enable_thinking is None else args.enable_thinking == "on"
    print(
        f"evaluating {model_dir} on {', '.join(f'{b} ({len(p)})' for b, p in problems.items())} "
        f"with {args.backend}, n={spec.n}",
        file=sys.stderr,
    )
    results = evaluate_model(
        model_dir, problems, spec, backend=args.backend, enable_thinking=thinking,
        overlong=args.overlong,
        keep_partial=args.results or "eval",  # if the engine dies: DIR.partial/ keeps the finished
        progress=True,
    )  # fmt: skip
    for b, r in results.items():
        m = r.metrics
        extra = "".join(
            f"  {k} {m[k]:.3f}"
            for k in m
            if k.startswith(("pass@", "maj@")) and k != "pass@1" and "ci" not in k
        )
        print(
            f"{b:8} pass@1 {m['pass@1']:.3f} [{m['pass@1_ci_low']:.3f}, {m['pass@1_ci_high']:.3f}]{extra}  "
            f"mean length {m['mean_length']:.1f}  truncated {m['truncation_rate']:.2f}  ({m['problems']} problems)"
            + (
                f"  {m['skipped_overlong']} skipped: prompt + max_tokens over the context"
                if m.get("skipped_overlong")
                else ""
            )
        )
    if args.results:
        write_eval_dir(args.results, results)
        print(f"per-problem tables and metrics in {args.results}")
    return results


@app.command("eval", help="evaluate a checkpoint on AIME'24 / AMC23 / the world's test split")
def eval_(
    ctx: typer.Context,
    model_dir: str = typer.Argument(..., metavar="MODEL_DIR"),
    benchmark: list[str] | None = BENCHMARK,
    benchmark_file: list[str] | None = BENCHMARK_FILE,
    n: int = N,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    max_tokens: int = MAX_TOKENS,
    seed: int = SEED,
    limit: int | None = LIMIT,
    backend: Literal["vllm", "transformers"] = BACKEND,
    overlong: Literal["skip", "error"] = OVERLONG,
    enable_thinking: Literal["on", "off"] | None = THINKING,
    world: str | None = WORLD_DIR,
    results: str | None = RESULTS,
) -> None:
    args = collect(ctx, **{k: v for k, v in locals().items() if k != "ctx"})
    args.default_benchmarks = ["aime24", "amc23"]
    _evaluate(model_dir, args)


@app.command(
    "evaluate-checkpoints",
    help="evaluate every save of a run directory (or checkpoints), fanned out over Dask; one "
    "MLflow run",
)
def evaluate_checkpoints(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(..., metavar="RUN_OR_CHECKPOINT..."),
    name: str = typer.Option("evaluate", "--name", help="MLflow run name"),
    benchmark: list[str] | None = BENCHMARK,
    benchmark_file: list[str] | None = BENCHMARK_FILE,
    n: int = N,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    max_tokens: int = MAX_TOKENS,
    seed: int = SEED,
    limit: int | None = LIMIT,
    backend: Literal["vllm", "transformers"] = BACKEND,
    overlong: Literal["skip", "error"] = OVERLONG,
    world: str | None = WORLD_DIR,
    workers: int = WORKERS,
    address: str | None = ADDRESS,
) -> None:
    from sparks.cli.snapshots import check_targets
    from sparks.flows.engine import prefect_env
    from sparks.flows.evaluate import EvaluateConfig
    from sparks.flows.evaluate import evaluate_checkpoints as run_flow
    from sparks.flows.evaluate import targets as found_targets

    args = collect(ctx, **{k: v for k, v in locals().items() if k != "ctx"})
    names = benchmark or ["world"]
    ev = _evaluation(args, names, benchmark_files(args, names))
    cfg = EvaluateConfig(checkpoints=targets, name=name, evaluation=ev, cluster=cluster_of(args))
    check_targets(found_targets(cfg), "evaluate")
    prefect_env()
    out = run_flow(cfg)
    for c, per in out.items():
        print(f"{c}: " + ", ".join(f"{b} pass@1 {m['pass@1']:.3f}" for b, m in per.items()))


@app.command(
    help="scale a head set (0 = ablate) and evaluate: one edited checkpoint, or a whole study "
    "(several --scale, or --heads-from, or --study) against the baseline"
)
def ablate(
    ctx: typer.Context,
    model_dir: str | None = typer.Argument(None, metavar="MODEL_DIR"),
    config: str | None = typer.Option(
        None,
        "--config",
        metavar="FILE",
        help="a study as a YAML file (AblationConfig; configs/ablation/); MODEL_DIR, --out and "
        "every study flag given (--n, --limit, --benchmark-file, --scale, ...) override it",
    ),  # fmt: skip
    heads: str | None = typer.Option(
        None, "--heads", help="heads as L{layer}H{head}, comma-separated, e.g. L12H3,L14H0"
    ),
    heads_from: str | None = field_option(
        AblationConfig,
        "heads_from",
        "--heads-from",
        metavar="RUN_OR_REPORT",
        help="a run (emergent heads at its last save), a snapshot, or a compare report",
    ),  # fmt: skip
    head_set: str | None = field_option(
        AblationConfig, "head_set", "--head-set", help="with a compare report: the head set's name"
    ),
    scale: list[float] | None = typer.Option(
        None,
        "--scale",
        help="0 ablates; 0.5 halves; 1.3 amplifies; repeat it for a study (default 0)",
    ),
    study: bool = typer.Option(False, "--study", help="a study even with one --scale"),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="a study: check every input and print the heads, variants, problems and samples; write nothing",
    ),  # fmt: skip
    control: Literal["none", "random"] = field_option(AblationConfig, "control", "--control"),
    draws: int = field_option(AblationConfig, "draws", "--draws"),
    name: str = field_option(AblationConfig, "name", "--name", help="the study's MLflow run name"),
    mlflow_uri: str | None = typer.Option(
        None, "--mlflow-uri", help="tracking URI (default: the project store)"
    ),
    experiment: str = typer.Option("sparks-ablation", "--experiment", help="MLflow experiment"),
    out: str | None = typer.Option(
        None, "--out", metavar="DIR", help="the edited checkpoint; for a study, its directory"
    ),
    benchmark: list[str] | None = BENCHMARK,
    benchmark_file: list[str] | None = BENCHMARK_FILE,
    n: int = N,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    max_tokens: int = MAX_TOKENS,
    seed: int = SEED,
    limit: int | None = LIMIT,
    backend: Literal["vllm", "transformers"] = BACKEND,
    overlong: Literal["skip", "error"] = OVERLONG,
    enable_thinking: Literal["on", "off"] | None = THINKING,
    world: str | None = WORLD_DIR,
    results: str | None = RESULTS,
) -> None:
    from sparks.studies.interventions import write_scaled_checkpoint

    args = collect(
        ctx, **{k: v for k, v in locals().items() if k not in ("ctx", "write_scaled_checkpoint")}
    )
    args.default_benchmarks = []
    if config:  # a study described by a file (configs/ablation/)
        _study(_study_config(args), args)
        return
    if model_dir is None:
        raise ValueError("give the model: sparks ablate MODEL_DIR ..., or --config FILE")
    if out is None:
        raise ValueError("give --out DIR: the edited checkpoint, or a study's directory")
    scales = scale or [0.0]
    if study or len(scales) > 1 or heads_from:
        _ablation_study(args, scales)
        return
    if not heads:
        raise ValueError("give the heads: --heads L12H3,L14H0, or --heads-from RUN_OR_REPORT")
    benchmark_files(args, benchmark or [])  # every argument is checked before writing
    edited = write_scaled_checkpoint(model_dir, heads, scales[0], out)
    print(f"edited checkpoint written to {edited} (heads {heads} scaled by {scales[0]})")
    if benchmark:
        _evaluate(str(edited), args)


def _ablation_study(args: Args, scales: list[float]) -> None:
    """The whole study (baseline and every scale, same problems and sampling), as the
    ablation-study flow runs it, written under --out."""
    from sparks.config import validate_config
    from sparks.world.build import World

    if args.results:
        raise ValueError(
            "--results is for one edited checkpoint (one --scale); a study writes its tables, "
            f"figures and sample viewer under --out {args.out}"
        )
    if not args.benchmark:
        raise ValueError("a study needs benchmarks: add --benchmark NAME (aime24, amc23, world)")
    sources = benchmark_files(args, args.benchmark)
    if "world" in args.benchmark and "world" not in sources and args.world:
        sources["world"] = str(World(Path(args.world)).tasks_path("test"))
    evaluation = _evaluation(args, args.benchmark, sources)
    raw = {
        "name": args.name, "model": args.model_dir, "scales": scales, "output_dir": args.out,
        "heads": args.heads.split(",") if args.heads else [], "heads_from": args.heads_from,
        "head_set": args.head_set, "evaluation": evaluation.model_dump(),
        "control": args.control, "draws": args.draws,
        "tracking": {"mlflow_uri": args.mlflow_uri, "experiment": args.experiment},
    }  # fmt: skip
    _study(validate_config(raw, source="sparks ablate", model=AblationConfig), args)


def _study(cfg, args: Args) -> None:
    """Run the study, or with --dry-run print what it would do and write nothing."""
    from sparks.studies.ablation import plan_ablation, plan_lines, run_ablation

    if args.dry_run:
        for line in plan_lines(plan_ablation(cfg), cfg):
            print(line)
        print("dry run: the study's inputs are in order; nothing was written")
        return
    _print_study(run_ablation(cfg))


# `sparks ablate --config FILE` flags that replace a study config's values: option -> where
STUDY_FLAGS = {
    "heads": ("heads",), "heads_from": ("heads_from",), "head_set": ("head_set",),
    "scale": ("scales",), "control": ("control",), "draws": ("draws",), "name": ("name",),
    "out": ("output_dir",), "model_dir": ("model",),
    "mlflow_uri": ("tracking", "mlflow_uri"), "experiment": ("tracking", "experiment"),
    "benchmark": ("evaluation", "benchmarks"), "limit": ("evaluation", "limit"),
    "n": ("evaluation", "n"), "temperature": ("evaluation", "temperature"),
    "top_p": ("evaluation", "top_p"), "max_tokens": ("evaluation", "max_tokens"),
    "seed": ("evaluation", "seed"), "backend": ("evaluation", "backend"),
    "overlong": ("evaluation", "overlong"), "enable_thinking": ("enable_thinking",),
}  # fmt: skip


def _study_config(args: Args):
    """The study config FILE with every flag given on the command line applied over it."""
    from sparks.config import load_config, validate_config
    from sparks.world.build import World

    given = set(args.given) | ({"model_dir"} if args.model_dir else set())
    if "results" in given:
        raise ValueError(
            "--results is for one edited checkpoint; a study (--config) writes its tables under "
            "its output_dir (or --out)"
        )
    raw = load_config(args.config, model=AblationConfig).model_dump()
    changed = []
    for dest in sorted(given & set(STUDY_FLAGS)):
        value = getattr(args, dest)
        if dest == "heads":
            value = value.split(",")
            raw.update(heads_from=None, head_set=None)
        elif dest == "heads_from":
            raw["heads"] = []
        elif dest == "enable_thinking":
            value = value == "on"
        *parents, key = STUDY_FLAGS[dest]
        node = raw
        for part in parents:
            node = node[part]
        node[key] = value
        changed.append(key)
    selected = raw["evaluation"]["benchmarks"]
    sources = benchmark_files(args, selected)
    if "world" in selected and "world" not in sources and args.world:
        sources["world"] = str(World(Path(args.world)).tasks_path("test"))
    if sources:
        raw["evaluation"]["sources"] = {**raw["evaluation"]["sources"], **sources}
        changed += [f"sources.{b}" for b in sources]
    source = f"{args.config}" + (
        f" (with {', '.join(changed)} from the command line)" if changed else ""
    )
    cfg = validate_config(raw, source=source, model=AblationConfig)
    print(f"study: {source}")
    return cfg


def _print_study(result: dict) -> None:
    study = result["study"]
    print(f"heads: {', '.join(result['heads'])}")
    print("pass@1 by difficulty (95% bootstrap interval over problems):")
    for r in study["pass_by_bucket"]:
        print(
            f"  {r['variant']:12} {r['benchmark']:8} {r['bucket']:10} {r['pass@1']:.3f} "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]  ({r['problems']} problems)"
        )
    for r in study.get("skipped", []):
        print(
            f"  {r['variant']:12} {r['benchmark']:8} {'skipped':10} {r['problems']} problems "
            f"not measured ({r['reason']})"
        )
    print("flips against the baseline (a problem is solved when half its samples are correct):")
    for r in study["flips"]:
        print(
            f"  {r['variant']:12} {r['benchmark']:8} solved->failed {r['solved->failed']:3}  "
            f"failed->solved {r['failed->solved']:3}  exact McNemar p {r['p_value']:.3g}"
        )
    from sparks.studies.control import control_lines

    for line in control_lines(study.get("control", [])):
        print(line)
    print("failure modes (samples):")
    for r in study["failure_modes"]:
        print(
            f"  {r['variant']:12} {r['benchmark']:8} {r['bucket']:10} {r['mode']:13} "
            f"{r['samples']:4}  mean length {r['mean_length']:.1f}"
        )
    print(f"tables and figures in {study['dir']}; sample viewer: {study['viewer']}")
