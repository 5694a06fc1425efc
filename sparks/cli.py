"""The `sparks` command line. Each subcommand validates its input, then calls one library function.

Errors that a user can fix (a missing path, a malformed config, an empty file) print one line,
`sparks: error: ...`, and exit with status 2; nothing already written is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

from sparks.config import (  # pydantic only: `sparks` stays light
    DEFAULT_SCHEDULE,
    AblationConfig,
    ClusterSettings,
    CompareConfig,
    EvaluationSettings,
    PairsSettings,
    SnapshotSettings,
    WorldSettings,
)

USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    RuntimeError,
)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in sparks' one-line form (`sparks: error: ...`, exit 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"sparks: error: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _number(kind: type = int, field: tuple[type, str] | None = None, **bounds: float):
    """A numeric option's type: parsed as `kind` and held to `bounds` (ge, gt, le, lt), or to the
    bounds a config field declares (`field=(Model, "name")`): one place declares each range."""
    if field is not None:
        model, name = field
        for m in model.model_fields[name].metadata:
            for op in ("ge", "gt", "le", "lt"):
                if getattr(m, op, None) is not None:
                    bounds[op] = getattr(m, op)
    said = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    ok = {"ge": float.__ge__, "gt": float.__gt__, "le": float.__le__, "lt": float.__lt__}
    where = f" (as {field[0].__name__}.{field[1]})" if field else ""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        for op, limit in bounds.items():
            if not ok[op](float(value), float(limit)):
                raise argparse.ArgumentTypeError(f"must be {said[op]} {limit}{where}, got {value}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    parse.bounds = bounds  # read by the test that tries a value out of every option's range
    return parse


def _steps(text: str) -> int | str:
    """--steps: a whole number of at least 1, or auto."""
    if text == "auto":
        return text
    try:
        return _STEPS(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e}; or auto") from None


_STEPS = _number(int, ge=1, le=1000)
_steps.bounds = _STEPS.bounds  # type: ignore[attr-defined]


def _world_build(args: argparse.Namespace) -> None:
    from sparks.world.build import WorldSpec, build_world
    from sparks.world.pretrain import PretrainSpec

    steps = PretrainSpec().steps if args.pretrain_steps is None else args.pretrain_steps
    if steps < 0:
        raise ValueError(f"--pretrain-steps {steps}: give 0 (a random network) or more")
    world = build_world(
        Path(args.out_dir), WorldSpec(seed=args.seed, pretrain=PretrainSpec(steps=steps))
    )
    base = json.loads((world.root / "world.json").read_text())["base"]
    skill = ", ".join(f"{k} {v:.2f}" for k, v in base.get("plain_skill", {}).items())
    print(
        f"world ready in {world.root}: model in {world.model_dir}, tasks in {world.root / 'tasks'}, "
        f"pairs in {world.pairs_path}\nbase {base['key']}: pretrained {base['pretrain']['steps']} "
        f"steps (final loss {base['training'].get('loss_last', float('nan')):.3f}); greedy accuracy "
        f"in its own plain format: {skill or 'n/a'}"
    )


def _demo(args: argparse.Namespace) -> None:
    from sparks.demo import run_demo

    run_demo(args.config, Path(args.out))


def _snapshot(args: argparse.Namespace) -> None:
    from sparks.circuits import snapshot_checkpoint

    snap = snapshot_checkpoint(
        args.model_dir,
        args.pairs,
        args.out,
        steps=args.steps,
        steps_tolerance=args.steps_tolerance,
        max_steps=args.max_steps,
        top_k=args.top_k,
        batch_size=args.batch_size,
        metric=args.metric,
        n_pairs=args.n_pairs,
        step=args.step,
        dtype=args.dtype,
        schedule=args.schedule,
        tokens_per_pass=args.tokens_per_pass,
        device=args.device,
        record_failure=args.record_failure,
        pair_set=args.pair_set,
        more_sets=json.loads(args.more_sets) if args.more_sets else [],
    )
    if getattr(snap, "reason", None):
        print(f"snapshot of step {args.step} failed, recorded in {args.out}: {snap.reason}")
        return
    size = f"top-{args.top_k} circuit"
    if args.top_k >= snap.n_edges:
        size = f"circuit: the whole graph (--top-k {args.top_k} >= its {snap.n_edges} edges)"
    pairs = snap.settings["pairs"]
    named = f"pair set {pairs['set']}, " if pairs["set"] else ""
    print(
        f"snapshot written to {args.out}: {len(snap.heads)} heads in the {size} "
        f"({', '.join(snap.heads)}); faithfulness {snap.circuit_faithfulness:.3f}; "
        f"{snap.settings['steps']} IG steps, completeness error {snap.completeness_error:.1%}; "
        f"{named}{pairs['n_pairs']} pairs from {pairs['file']} (sha256 {pairs['sha256'][:12]}); "
        f"{snap.seconds:.1f}s"
    )


def _world(args: argparse.Namespace):
    """The world of --world DIR, or the default one (built once into the shared cache)."""
    from sparks.config import WorldSettings
    from sparks.world.build import World, world_for

    return World(Path(args.world)) if args.world else world_for(WorldSettings())


def _pairs(args: argparse.Namespace) -> None:
    from sparks.config import WORLD
    from sparks.pairs import build_pairs
    from sparks.pairs.build import check_request

    check_request(args.mode, args.source, args.reference)  # before a world is built for it
    files = _benchmark_files(args, args.source)
    needs_world = WORLD in (args.model, args.reference) or (
        args.mode != "file" and WORLD in args.source and WORLD not in files
    )
    world = _world(args) if needs_world else None

    def resolve(m):
        return str(world.model_dir) if m == WORLD else m

    report = build_pairs(
        resolve(args.model),
        args.out,
        mode=args.mode,
        sources=args.source,
        files=files,
        reference=resolve(args.reference) if args.reference else None,
        n=args.n,
        prefix_tokens=args.prefix_tokens,
        seed=args.seed,
        backend=args.backend,
        world=world,
    )
    print(report.line())


def _run(args: argparse.Namespace) -> None:
    from sparks.config import load_config

    cfg = load_config(args.config, output_dir=args.out)
    if args.dry_run:
        from sparks.plan import dry_run

        plan = dry_run(cfg, gpu_gb=args.gpu_memory)
        print(plan.text())
        if plan.problems:
            raise ValueError(
                f"{args.config}: {len(plan.problems)} problem(s) would stop this run: {plan.problems[0]}"
            )
        print(f"dry run of {args.config}: everything that can be checked offline is in order")
        return
    from sparks.demo import run_config

    run_config(cfg)


def _compare(args: argparse.Namespace) -> None:
    from sparks.config import CompareConfig, load_config, validate_config

    over = {
        "runs": args.sources or None,
        "base": args.base,
        "output_dir": args.out,
        "stability": args.stability,
        "name": args.name,
    }
    if args.config:
        cfg = load_config(args.config, model=CompareConfig, **over)
    else:
        if not args.out:
            raise ValueError("sparks compare needs --out DIR (where the report goes)")
        raw = {k: v for k, v in over.items() if v is not None}
        if args.experiment or args.mlflow_uri:
            raw["tracking"] = {"experiment": args.experiment or "sparks-compare"} | (
                {"mlflow_uri": args.mlflow_uri} if args.mlflow_uri else {}
            )
        cfg = validate_config(raw, source="sparks compare", model=CompareConfig)
    from sparks.analysis.compare import run_compare
    from sparks.demo import print_comparison

    print_comparison(run_compare(cfg))


def _cluster(args: argparse.Namespace):
    from sparks.config import ClusterSettings, validate_config

    raw = {"workers": args.workers, "address": args.address}
    return validate_config(raw, source="--workers/--address", model=ClusterSettings)


def _check_targets(found: list[tuple[str, int]], what: str) -> None:
    """Every checkpoint a flow would work on exists with its weights, or a one-line error, before
    any server, store or world is started."""
    from sparks.models import check_checkpoint
    from sparks.train.writers import busy

    if not found:
        raise ValueError(f"nothing to {what}: the directories given hold no checkpoint")
    if line := busy([c for c, _ in found]):
        raise ValueError(line)
    for c, _ in found:
        if what == "analyze" and (Path(c) / "circuit").is_dir():
            continue  # snapshotted already: kept as it is, weights or not (retention)
        if Path(c).exists() or c.startswith(("/", ".")):  # not a hub id
            check_checkpoint(c)


def _run_snapshot_settings(targets: list[str]):
    """A run directory's own snapshot settings (its saves are snapshotted as the run would)."""
    import json

    from sparks.config import SnapshotSettings
    from sparks.train.saves import is_run_dir

    for t in targets:
        if is_run_dir(Path(t)):
            return SnapshotSettings(**json.loads((Path(t) / "config.json").read_text())["snapshot"])
    return SnapshotSettings()


def _analyze(args: argparse.Namespace) -> None:
    from flows.analyze import AnalyzeConfig, analyze, targets
    from flows.cluster import api_for_workers
    from sparks.config import SnapshotSettings, validate_config
    from sparks.demo import prefect_env

    settings = _run_snapshot_settings(args.targets)
    update = {k: v for k, v in (("steps", args.steps), ("top_k", args.top_k)) if v is not None}
    snapshot = validate_config(
        settings.model_dump() | update, source="--steps/--top-k", model=SnapshotSettings
    )
    cfg = AnalyzeConfig(
        checkpoints=args.targets,
        base=args.base,
        pairs=args.pairs,
        snapshot=snapshot,
        cluster=_cluster(args),
    )
    found, pairs = targets(cfg)
    _check_targets(found, "analyze")
    if not Path(pairs).is_file():
        raise FileNotFoundError(f"pairs file {pairs} does not exist: give --pairs PAIRS.jsonl")
    prefect_env()
    with api_for_workers(cfg.cluster):
        out = analyze(cfg)
    for c, heads in out["heads"].items():
        extra = (
            f"; emergent: {', '.join(out['emergent'][c]) or 'none'}" if "emergent" in out else ""
        )
        print(f"{c}: {len(heads)} heads ({', '.join(heads)}){extra}")


def _evaluate_checkpoints(args: argparse.Namespace) -> None:
    from flows.evaluate import EvaluateConfig, evaluate_checkpoints, targets
    from sparks.config import EvaluationSettings
    from sparks.demo import prefect_env

    ev = EvaluationSettings(
        benchmarks=args.benchmark or args.default_benchmarks,
        sources=_benchmark_files(args, args.benchmark or args.default_benchmarks),
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
        limit=args.limit,
        backend=args.backend,
        overlong=args.overlong,
    )
    cfg = EvaluateConfig(
        checkpoints=args.targets, name=args.name, evaluation=ev, cluster=_cluster(args)
    )
    _check_targets(targets(cfg), "evaluate")
    prefect_env()
    out = evaluate_checkpoints(cfg)
    for c, per in out.items():
        print(f"{c}: " + ", ".join(f"{b} pass@1 {m['pass@1']:.3f}" for b, m in per.items()))


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=_number(int, (ClusterSettings, "workers")),
        default=1,
        help="checkpoints at once on a local Dask cluster (1: serial)",
    )
    p.add_argument(
        "--address", default=None, help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786"
    )


def _mlflow_sync(args: argparse.Namespace) -> None:
    from sparks.log.tracking import upload_pending

    n = upload_pending(Path(args.output_dir), args.uri)
    print(f"uploaded {n} pending records from {args.output_dir} to MLflow")


def _add_eval_options(p: argparse.ArgumentParser, *, default_benchmarks: list[str] | None) -> None:
    p.add_argument(
        "--benchmark",
        action="append",
        default=None,
        metavar="NAME",
        help=f"aime24, amc23 or world; repeatable (default: {', '.join(default_benchmarks or ['none'])})",
    )
    p.add_argument(
        "--benchmark-file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a local .jsonl/.parquet file or directory for benchmark NAME (needed offline)",
    )
    ev = EvaluationSettings
    p.add_argument("--n", type=_number(int, (ev, "n")), default=1, help="samples per problem")
    p.add_argument("--temperature", type=_number(float, (ev, "temperature")), default=0.6)
    p.add_argument("--top-p", type=_number(float, (ev, "top_p")), default=0.95)
    p.add_argument("--max-tokens", type=_number(int, (ev, "max_tokens")), default=2048)
    p.add_argument("--seed", type=_number(int, (ev, "seed")), default=0)
    p.add_argument(
        "--limit",
        type=_number(int, (EvaluationSettings, "limit")),
        default=None,
        help="evaluate only the first N problems of each benchmark",
    )
    p.add_argument("--backend", default="vllm", choices=("vllm", "transformers"))
    p.add_argument(
        "--overlong",
        default="skip",
        choices=("skip", "error"),
        help="a prompt that with --max-tokens exceeds the model's context: skip it (counted) or stop",
    )
    p.add_argument(
        "--enable-thinking", choices=("on", "off"), default=None, help="Qwen3-style templates only"
    )
    p.add_argument(
        "--world", default=None, metavar="DIR", help="world directory for the `world` benchmark"
    )
    p.add_argument(
        "--results", default=None, metavar="DIR", help="write per-problem tables and metrics here"
    )
    p.set_defaults(default_benchmarks=default_benchmarks or [])


def _benchmark_files(args: argparse.Namespace, selected: list[str] | None = None) -> dict[str, str]:
    """NAME=PATH pairs; a NAME that is not among `selected` benchmarks is refused at once."""
    bad = [f for f in args.benchmark_file if "=" not in f]
    if bad:
        raise ValueError(
            f"--benchmark-file {bad[0]!r}: write it as NAME=PATH, e.g. aime24=data/aime24.jsonl"
        )
    files = dict(f.split("=", 1) for f in args.benchmark_file)
    stray = [n for n in files if selected is not None and n not in selected]
    if stray:
        raise ValueError(
            f"--benchmark-file {stray[0]}=...: {stray[0]!r} is not a selected benchmark "
            f"({', '.join(selected)}); fix the name or add --benchmark {stray[0]}"
        )
    return files


def _evaluate(model_dir: str, args: argparse.Namespace) -> dict:
    import json

    from sparks.evaluate.benchmarks import load_benchmark
    from sparks.evaluate.evaluate import evaluate_model
    from sparks.evaluate.generate import SamplingSpec
    from sparks.files import atomic_dir
    from sparks.models import check_checkpoint, load_tokenizer, require_chat_template

    check_checkpoint(model_dir)
    require_chat_template(load_tokenizer(model_dir), model_dir)
    names = args.benchmark or args.default_benchmarks
    files = _benchmark_files(args, names)
    world = None
    if "world" in names and "world" not in files:
        world = _world(args)
    problems = {
        b: load_benchmark(b, source=files.get(b), world=world, limit=args.limit) for b in names
    }
    spec = SamplingSpec(
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
    )
    thinking = None if args.enable_thinking is None else args.enable_thinking == "on"
    print(
        f"evaluating {model_dir} on {', '.join(f'{b} ({len(p)})' for b, p in problems.items())} with {args.backend}, "
        f"n={spec.n}",
        file=sys.stderr,
    )
    results = evaluate_model(
        model_dir,
        problems,
        spec,
        backend=args.backend,
        enable_thinking=thinking,
        overlong=args.overlong,
        keep_partial=args.results or "eval",  # if the engine dies: DIR.partial/ keeps the finished
        progress=True,
    )
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
        with atomic_dir(Path(args.results)) as tmp:
            for b, r in results.items():
                r.table.to_parquet(tmp / f"{b}.parquet", index=False)
            (tmp / "metrics.json").write_text(
                json.dumps({b: r.metrics for b, r in results.items()}, indent=2)
            )
        print(f"per-problem tables and metrics in {args.results}")
    return results


def _eval(args: argparse.Namespace) -> None:
    _evaluate(args.model_dir, args)


def _ablate(args: argparse.Namespace) -> None:
    from sparks.evaluate.interventions import write_scaled_checkpoint

    if args.config:  # a study described by a file (configs/ablation/)
        _study(_study_config(args), args)
        return
    if args.model_dir is None:
        raise ValueError("give the model: sparks ablate MODEL_DIR ..., or --config FILE")
    if args.out is None:
        raise ValueError("give --out DIR: the edited checkpoint, or a study's directory")
    scales = args.scale or [0.0]
    if args.study or len(scales) > 1 or args.heads_from:
        _ablation_study(args, scales)
        return
    if not args.heads:
        raise ValueError("give the heads: --heads L12H3,L14H0, or --heads-from RUN_OR_REPORT")
    _benchmark_files(args, args.benchmark or [])  # every argument is checked before writing
    out = write_scaled_checkpoint(args.model_dir, args.heads, scales[0], args.out)
    print(f"edited checkpoint written to {out} (heads {args.heads} scaled by {scales[0]})")
    if args.benchmark:
        _evaluate(str(out), args)


def _ablation_study(args: argparse.Namespace, scales: list[float]) -> None:
    """The whole study (baseline and every scale, same problems and sampling), as the
    ablation-study flow runs it, written under --out."""
    from sparks.config import AblationConfig, EvaluationSettings, validate_config
    from sparks.world.build import World

    if args.results:
        raise ValueError(
            "--results is for one edited checkpoint (one --scale); a study writes its tables, "
            f"figures and sample viewer under --out {args.out}"
        )
    if not args.benchmark:
        raise ValueError("a study needs benchmarks: add --benchmark NAME (aime24, amc23, world)")
    sources = _benchmark_files(args, args.benchmark)
    if "world" in args.benchmark and "world" not in sources and args.world:
        sources["world"] = str(World(Path(args.world)).tasks_path("test"))
    evaluation = EvaluationSettings(
        benchmarks=args.benchmark, sources=sources, limit=args.limit, n=args.n,
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
        seed=args.seed, backend=args.backend, overlong=args.overlong,
    )  # fmt: skip
    raw = {
        "name": args.name, "model": args.model_dir, "scales": scales, "output_dir": args.out,
        "heads": args.heads.split(",") if args.heads else [], "heads_from": args.heads_from,
        "head_set": args.head_set, "evaluation": evaluation.model_dump(),
        "control": args.control, "draws": args.draws,
        "tracking": {"mlflow_uri": args.mlflow_uri, "experiment": args.experiment},
    }  # fmt: skip
    _study(validate_config(raw, source="sparks ablate", model=AblationConfig), args)


def _study(cfg, args: argparse.Namespace) -> None:
    """Run the study, or with --dry-run print what it would do and write nothing."""
    from sparks.ablation import plan_ablation, plan_lines, run_ablation

    if args.dry_run:
        for line in plan_lines(plan_ablation(cfg), cfg):
            print(line)
        print("dry run: the study's inputs are in order; nothing was written")
        return
    _print_study(run_ablation(cfg))


# `sparks ablate --config FILE` flags that replace a study config's values: dest -> where
_STUDY_FLAGS = {
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


def _study_config(args: argparse.Namespace):
    """The study config FILE with every flag given on the command line applied over it."""
    from sparks.config import AblationConfig, load_config, validate_config
    from sparks.world.build import World

    if "results" in args.given:
        raise ValueError(
            "--results is for one edited checkpoint; a study (--config) writes its tables under "
            "its output_dir (or --out)"
        )
    raw = load_config(args.config, model=AblationConfig).model_dump()
    changed = []
    for dest in sorted(args.given & set(_STUDY_FLAGS)):
        value = getattr(args, dest)
        if dest == "heads":
            value = value.split(",")
            raw.update(heads_from=None, head_set=None)
        elif dest == "heads_from":
            raw["heads"] = []
        elif dest == "enable_thinking":
            value = value == "on"
        *parents, key = _STUDY_FLAGS[dest]
        node = raw
        for part in parents:
            node = node[part]
        node[key] = value
        changed.append(key)
    selected = raw["evaluation"]["benchmarks"]
    sources = _benchmark_files(args, selected)
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
    from sparks.evaluate.control import control_lines

    for line in control_lines(study.get("control", [])):
        print(line)
    print("failure modes (samples):")
    for r in study["failure_modes"]:
        print(
            f"  {r['variant']:12} {r['benchmark']:8} {r['bucket']:10} {r['mode']:13} "
            f"{r['samples']:4}  mean length {r['mean_length']:.1f}"
        )
    print(f"tables and figures in {study['dir']}; sample viewer: {study['viewer']}")


def _train(args: argparse.Namespace) -> None:
    import json
    import os

    from sparks.config import load_config
    from sparks.train.launch import launched

    cfg = load_config(args.config)
    if not launched():  # a launched rank's checks were the launcher's
        from sparks.plan import dry_run

        if problems := dry_run(cfg).problems:
            raise ValueError(f"{problems[0]} (nothing was started or written)")
    from sparks.pipeline import run_training, terminate_on_sigterm

    terminate_on_sigterm()  # `sparks stop`, a scheduler's kill: MLflow's run ends KILLED
    result = run_training(cfg, stage=args.stage)
    if os.environ.get("RANK", "0") == "0":  # one summary per launch, from the main process
        print(json.dumps(result, indent=2))
    from sparks.train.ranks import leave_process_groups

    leave_process_groups()


def _stop(args: argparse.Namespace) -> None:
    from sparks.train.writers import stop

    out = Path(args.run)
    if not out.is_dir():
        raise FileNotFoundError(f"{out} does not exist: give the output directory of a run")
    ended = stop(out, grace=args.grace)
    if not ended:
        print(f"nothing is writing {out}")
        return
    print(f"stopped {len(ended)} process(es) writing {out}: {'; '.join(ended)}")
    print("a rerun with the same config resumes from the last save")


def _up(args: argparse.Namespace) -> None:
    from sparks.ops import stack_from_env, up

    up(stack_from_env(db=args.db), deploy=not args.no_deploy)


def _down(args: argparse.Namespace) -> None:
    from sparks.ops import down

    down()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sparks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="the embedded tiny world").add_subparsers(
        dest="world_cmd", required=True
    )
    build = world.add_parser(
        "build", help="build tokenizer, tiny model, tasks and pairs into OUT_DIR"
    )
    build.add_argument("out_dir", metavar="OUT_DIR")
    build.add_argument("--seed", type=_number(int, (WorldSettings, "seed")), default=0)
    build.add_argument(
        "--pretrain-steps",
        type=_number(int, (WorldSettings, "pretrain_steps")),
        default=None,
        metavar="N",
        help="pretraining steps of the base model (default: the shipped base's; 0: a random "
        "network); a base not shipped is trained once into OUT_DIR/../bases",
    )
    build.set_defaults(func=_world_build)

    snap = sub.add_parser(
        "snapshot", help="build a circuit snapshot (EAP-IG over attention heads) of a checkpoint"
    )
    snap.add_argument("model_dir", metavar="MODEL_DIR")
    snap.add_argument(
        "--pairs", required=True, metavar="PAIRS.jsonl", help="clean/corrupted prompt pairs"
    )
    snap.add_argument("--out", required=True, metavar="DIR", help="snapshot directory to create")
    snap.add_argument(
        "--steps",
        type=_steps,
        default="auto",
        help="integrated-gradient steps (1 = plain EAP), or auto: raised until the completeness "
        "error is within --steps-tolerance and the top-k edges hold still",
    )
    snap.add_argument(
        "--steps-tolerance",
        type=_number(float, (SnapshotSettings, "steps_tolerance")),
        default=0.02,
        help="--steps auto: error to reach (0.02)",
    )
    snap.add_argument(
        "--max-steps",
        type=_number(int, (SnapshotSettings, "max_steps")),
        default=81,
        help="--steps auto: the cap (81)",
    )
    snap.add_argument(
        "--top-k",
        type=_number(int, (SnapshotSettings, "top_k")),
        default=200,
        help="edges kept in the circuit",
    )
    snap.add_argument(
        "--batch-size",
        type=_number(int, (SnapshotSettings, "batch_size")),
        default=16,
        help="pairs per batch",
    )
    snap.add_argument(
        "--metric",
        default="auto",
        choices=("auto", "logit_diff", "logprob", "kl", "kl_prefix"),
        help="auto: logit_diff on pairs with answers, kl_prefix on contrast pairs, else kl; "
        "logit_diff/logprob need answer tokens",
    )
    snap.add_argument(
        "--n-pairs",
        type=_number(int, (SnapshotSettings, "n_pairs")),
        default=None,
        help="use only the first N pairs",
    )
    snap.add_argument(
        "--step", type=_number(int, ge=0), default=0, help="training step recorded in the snapshot"
    )
    snap.add_argument(
        "--schedule",
        default=DEFAULT_SCHEDULE,
        choices=("midpoint", "gauss", "right", "left"),
        help="IG quadrature: midpoint (default), gauss (Gauss-Legendre), right k/m (k=1..m), "
        "left k/m (k=0..m-1, as hannamw/EAP-IG)",
    )
    snap.add_argument(
        "--tokens-per-pass",
        type=_number(int, (SnapshotSettings, "tokens_per_pass")),
        default=None,
        help="most tokens in one forward/backward pass (default: sized from free memory); "
        "lower it if a snapshot runs out of memory",
    )
    snap.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16", "float64")
    )
    snap.add_argument("--device", default=None, help="e.g. cuda:1 (default: cuda if any, else cpu)")
    snap.add_argument(
        "--record-failure",
        action="store_true",
        help="a model with NaN/inf writes a failed snapshot instead of exiting with an error",
    )
    snap.add_argument(
        "--pair-set", default="", metavar="NAME", help="the pair set the file holds (recorded)"
    )
    # the training hook's process mode: a save's other pair sets, from the same loaded model
    snap.add_argument("--more-sets", default=None, help=argparse.SUPPRESS)
    snap.set_defaults(func=_snapshot)

    pp = sub.add_parser(
        "pairs", help="build clean/corrupted attribution pairs for a model, in its own tokens"
    )
    pp.add_argument("model", metavar="MODEL", help="checkpoint directory, hub id or 'world'")
    pp.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="NAME|FILE",
        help="problems: aime24, amc23, world, a .jsonl/.parquet file or a hub id (repeatable); "
        "in file mode, the pairs file",
    )
    pp.add_argument("--mode", default="numbers", choices=("numbers", "contrast", "file"))
    pp.add_argument(
        "--reference",
        default=None,
        metavar="MODEL",
        help="contrast: model B, whose answer prefixes are the corrupted inputs",
    )
    pp.add_argument(
        "--n", type=_number(int, (PairsSettings, "n")), default=64, help="pairs to build"
    )
    pp.add_argument(
        "--prefix-tokens",
        type=_number(int, (PairsSettings, "prefix_tokens")),
        default=64,
        help="contrast: prefix length",
    )
    pp.add_argument("--seed", type=_number(int, (PairsSettings, "seed")), default=0)
    pp.add_argument("--backend", default="vllm", choices=("vllm", "transformers"))
    pp.add_argument(
        "--benchmark-file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a local file for benchmark NAME (offline)",
    )
    pp.add_argument("--world", default=None, metavar="DIR", help="world directory for 'world'")
    pp.add_argument("--out", required=True, metavar="FILE", help="pairs JSONL file to write")
    pp.set_defaults(func=_pairs)

    rp = sub.add_parser(
        "run", help="run the post-train flow on a config (or check it offline with --dry-run)"
    )
    rp.add_argument("config", metavar="CONFIG", help="a YAML run config, e.g. configs/*.yaml")
    rp.add_argument("--dry-run", action="store_true", help="check and print the plan; run nothing")
    rp.add_argument("--out", default=None, help="output directory (default: the config's)")
    rp.add_argument(
        "--gpu-memory",
        type=_number(float, gt=0),
        default=80.0,
        help="GPU size in GB the plan's estimates assume",
    )
    rp.set_defaults(func=_run)

    cmp = sub.add_parser(
        "compare",
        help="compare runs and checkpoints with a common base: emergent heads, frequency, cohorts, "
        "E scores, dynamics, retention/churn (and think on/off) as one report in MLflow",
    )
    cmp.add_argument(
        "sources",
        nargs="*",
        metavar="RUN_OR_CHECKPOINT",
        help="run directories (each stage counts as a run), snapshotted checkpoints, mlflow:RUN_ID",
    )
    cmp.add_argument(
        "--base", default=None, metavar="MODEL", help="the common base (checkpoint with circuit/)"
    )
    cmp.add_argument("--out", default=None, metavar="DIR", help="the report goes to DIR/report/")
    cmp.add_argument(
        "--stability",
        type=_number(float, (CompareConfig, "stability")),
        default=None,
        help="stability a head needs to count as stable (0.8)",
    )
    cmp.add_argument("--name", default=None, help="report (and MLflow run) name")
    cmp.add_argument(
        "--config", default=None, help="a compare config (e.g. configs/qwen3-8b-think.yaml)"
    )
    cmp.add_argument("--experiment", default=None, help="MLflow experiment (sparks-compare)")
    cmp.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI")
    cmp.set_defaults(func=_compare)

    an = sub.add_parser(
        "analyze",
        help="snapshot the saves of a run directory (or checkpoints) that have no snapshot, "
        "fanned out over a Dask cluster; with --base, their emergent heads",
    )
    an.add_argument("targets", nargs="+", metavar="RUN_OR_CHECKPOINT")
    an.add_argument("--pairs", default=None, help="pairs JSONL (default: the run's pairs.jsonl)")
    an.add_argument("--base", default=None, metavar="DIR", help="the base model's checkpoint")
    an.add_argument(
        "--steps", type=_steps, default=None, help="IG steps or auto (default: the run's)"
    )
    an.add_argument(
        "--top-k",
        type=_number(int, (SnapshotSettings, "top_k")),
        default=None,
        help="edges kept (default: the run's)",
    )
    _add_cluster_options(an)
    an.set_defaults(func=_analyze)

    evc = sub.add_parser(
        "evaluate-checkpoints",
        help="evaluate every save of a run directory (or checkpoints), fanned out over Dask; "
        "one MLflow run",
    )
    evc.add_argument("targets", nargs="+", metavar="RUN_OR_CHECKPOINT")
    evc.add_argument("--name", default="evaluate", help="MLflow run name")
    _add_eval_options(evc, default_benchmarks=["world"])
    _add_cluster_options(evc)
    evc.set_defaults(func=_evaluate_checkpoints)

    stp = sub.add_parser(
        "stop",
        help="end every process writing a run directory: the run, its launcher, and ranks a "
        "killed launcher left running",
    )
    stp.add_argument("run", metavar="OUTPUT_DIR")
    stp.add_argument(
        "--grace",
        type=_number(float, ge=0),
        default=15.0,
        help="seconds between SIGTERM and SIGKILL (default 15)",
    )
    stp.set_defaults(func=_stop)

    sync = sub.add_parser(
        "mlflow-sync", help="upload what a run kept locally while MLflow was unreachable"
    )
    sync.add_argument("output_dir", metavar="OUTPUT_DIR")
    sync.add_argument("--uri", default=None, help="tracking URI (default: the run's own)")
    sync.set_defaults(func=_mlflow_sync)

    ev = sub.add_parser(
        "eval", help="evaluate a checkpoint on AIME'24 / AMC23 / the world's test split"
    )
    ev.add_argument("model_dir", metavar="MODEL_DIR")
    _add_eval_options(ev, default_benchmarks=["aime24", "amc23"])
    ev.set_defaults(func=_eval)

    ab = sub.add_parser(
        "ablate",
        help="scale a head set (0 = ablate) and evaluate: one edited checkpoint, or a whole "
        "study (several --scale, or --heads-from, or --study) against the baseline",
    )
    ab.add_argument("model_dir", metavar="MODEL_DIR", nargs="?")
    ab.add_argument(
        "--config",
        metavar="FILE",
        help="a study as a YAML file (AblationConfig; configs/ablation/); MODEL_DIR, --out and "
        "every study flag given (--n, --limit, --benchmark-file, --scale, ...) override it",
    )
    ab.add_argument("--heads", help="heads as L{layer}H{head}, comma-separated, e.g. L12H3,L14H0")
    ab.add_argument(
        "--heads-from",
        metavar="RUN_OR_REPORT",
        help="a run (emergent heads at its last save), a snapshot, or a compare report",
    )
    ab.add_argument("--head-set", help="with a compare report: the head set's name")
    ab.add_argument(
        "--scale",
        type=float,
        action="append",
        help="0 ablates; 0.5 halves; 1.3 amplifies; repeat it for a study (default 0)",
    )
    ab.add_argument("--study", action="store_true", help="a study even with one --scale")
    ab.add_argument(
        "--dry-run",
        action="store_true",
        help="a study: check every input and print the heads, variants, problems and samples; "
        "write nothing",
    )
    ab.add_argument(
        "--control",
        choices=["none", "random"],
        default="none",
        help="random: beside the heads, --draws sets of as many random heads from outside the "
        "circuit, scaled alike (a study's control: is the effect the heads' or any heads'?)",
    )
    ab.add_argument(
        "--draws",
        type=_number(int, (AblationConfig, "draws")),
        default=3,
        help="random-head control: sets drawn (default 3)",
    )
    ab.add_argument("--name", default="ablation", help="the study's MLflow run name")
    ab.add_argument("--mlflow-uri", default=None, help="tracking URI (default: the project store)")
    ab.add_argument("--experiment", default="sparks-ablation", help="MLflow experiment")
    ab.add_argument(
        "--out",
        metavar="DIR",
        help="the edited checkpoint; for a study, its directory",
    )
    _add_eval_options(ab, default_benchmarks=None)
    ab.set_defaults(func=_ablate)

    upp = sub.add_parser(
        "up",
        help="start Prefect server, MLflow server and a worker on 127.0.0.1; register deployments",
    )
    upp.add_argument("--no-deploy", action="store_true", help="start the services only")
    upp.add_argument(
        "--db",
        default=None,
        metavar="sqlite|postgres|URL",
        help="Prefect's database: sqlite (the default), postgres (a local PostgreSQL server "
        "started beside the others: what holds under load), or a postgresql:// URL (e.g. "
        "docker/compose.yaml's); remembered by the next up and down (SPARKS_DB)",
    )
    upp.set_defaults(func=_up)
    sub.add_parser("down", help="stop what `sparks up` started").set_defaults(func=_down)

    tr = sub.add_parser(
        "train",
        help="run a config without Prefect, on this process or on every rank of "
        "`accelerate launch` / `torchrun` (see configs/accelerate/)",
    )
    tr.add_argument("config", metavar="CONFIG")
    tr.add_argument(
        "--stage",
        type=_number(int, ge=0),
        default=None,
        metavar="I",
        help="train only stage I (what a flow's launched training step runs); inputs must exist",
    )
    tr.set_defaults(func=_train)

    demo = sub.add_parser("demo", help="run the main job on the embedded default")
    demo.add_argument("--config", default="configs/demo.yaml")
    demo.add_argument("--out", default="runs/demo")
    demo.set_defaults(func=_demo)
    return parser


def _close_progress_bars() -> None:
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", []) or []):
        bar.close()


def _given(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> set[str]:
    """The dests of the options written on the command line (not left at their defaults), and
    MODEL_DIR when it has a value."""
    given = {"model_dir"} if getattr(args, "model_dir", None) else set()
    stack = [parser]
    while stack:
        for action in stack.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack += list(action.choices.values())
            elif any(t == o or t.startswith(o + "=") for o in action.option_strings for t in argv):
                given.add(action.dest)
    return given


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0), or a bad argument already said in one line (2)
        return int(e.code or 0)
    args.given = _given(parser, args, sys.argv[1:] if argv is None else argv)
    try:
        args.func(args)
    except USER_ERRORS as e:
        _close_progress_bars()  # the error is the last line, not under a half-drawn bar
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "ephemeral Prefect API server" in first:  # Prefect's own line says what, not what to do
            first += (
                " A busy machine starts it slowly: start a server with `sparks up`, or give it "
                "longer: PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120"
            )
        print(f"sparks: error: {first}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
