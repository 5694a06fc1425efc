"""One typed configuration for a whole run, loadable from YAML and validated before anything starts.

    model -> data -> stages (sft / distill / grpo, in order) -> snapshot -> evaluation -> tracking

The same pydantic model is the Prefect flow's parameter, so the Prefect UI renders it as a form.
A bad file fails in `load_config` with one line naming the file, the field and what to do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from sparks.circuits.spec import DEFAULT_SCHEDULE, MAX_IG_STEPS, SnapshotSpec  # noqa: F401 (re-exported)
from sparks.evaluate.spec import SamplingSpec
from sparks.world.pretrain import PretrainSpec  # plain dataclasses: no torch at import
from sparks.world.tasks import MAX_TEST

WORLD = "world"  # the embedded world: its tiny model, tasks and pairs, built on demand


class ConfigError(ValueError):
    """A run configuration that cannot be used; the message names the field and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldSettings(_Section):
    """The embedded world: its seed, split sizes and its base model's pretraining."""

    seed: int = Field(
        0, ge=0, description="Seed of the embedded world (tokenizer, model, tasks, pairs)."
    )
    n_train: int = Field(2000, ge=1, description="Training problems generated.")
    n_test: int = Field(
        200, ge=1, le=MAX_TEST, description="Test problems generated (the `world` benchmark)."
    )
    n_pairs: int = Field(64, ge=1, description="Clean/corrupted prompt pairs for attribution.")
    pretrain_steps: int = Field(
        PretrainSpec().steps,
        ge=0,
        le=100_000,
        description="Pretraining steps of the world's base model (the model organism); the "
        "default's base is shipped, any other is trained once (about 9 steps/s on 2 cores); 0 "
        "keeps a random network.",
    )


class ModelSettings(_Section):
    path: str = Field(
        WORLD,
        description="Base model: a local checkpoint directory, a hub id, or 'world' for the embedded model.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights' dtype for training and snapshots (float32 on CPU)."
    )


class DataSettings(_Section):
    train: str = Field(
        WORLD,
        description="Training problems: 'world', a local JSONL/parquet file, or a hub dataset id.",
    )
    subset: str | None = Field(
        None, description="Hub dataset configuration, e.g. 'main' for openai/gsm8k."
    )
    split: str = Field("train", min_length=1, description="Hub dataset split.")
    solutions: Literal["solution", "generation"] = Field(
        "solution",
        description="SFT targets: the records' solution, or (OpenR1-Math) the first generation "
        "math-verify marked correct.",
    )
    max_samples: int | None = Field(
        None, ge=1, description="Use at most this many training problems."
    )


class _StageCommon(_Section):
    """What every stage has: its method, length, saves, optimizer and batch."""

    method: str = Field(
        description="sft: on reference solutions; distill: SFT on a teacher's; grpo: RL on correctness."
    )
    max_steps: int = Field(30, ge=1, description="Optimizer steps in this stage.")
    save_steps: int = Field(
        5, ge=1, description="Save a checkpoint (and a snapshot) every N steps."
    )
    learning_rate: float = Field(1e-3, gt=0, le=1, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass (long sequences on a GPU)."
    )


class SFTStage(_StageCommon):
    """Supervised fine-tuning on the training problems' reference solutions."""

    method: Literal["sft"]
    max_length: int = Field(256, ge=16, description="Max tokens per example.")


class DistillStage(_StageCommon):
    """SFT on a teacher's correct solutions (generated once, cached in the stage's directory)."""

    method: Literal["distill"]
    max_length: int = Field(256, ge=16, description="Max tokens per example.")
    teacher: str = Field(min_length=1, description="Teacher model (path or hub id).")


class GRPOStage(_StageCommon):
    """GRPO: reinforcement learning on the correctness (and format) of sampled answers."""

    method: Literal["grpo"]
    num_generations: int = Field(4, ge=2, description="Completions per prompt.")
    max_completion_length: int = Field(48, ge=4, description="Max new tokens per completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    beta: float = Field(0.0, ge=0, description="KL penalty coefficient.")
    format_reward: bool = Field(True, description="Add a reward for a \\boxed{} answer.")
    use_vllm: bool = Field(
        False, description="Generate with vLLM colocated in the trainer (GPU, `gpu` extra)."
    )
    vllm_memory: float = Field(
        0.3, gt=0, lt=1, description="With vLLM: share of the GPU its engine may take."
    )

    @model_validator(mode="after")
    def _check(self) -> GRPOStage:
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"batch_size x grad_accum ({self.batch_size * self.grad_accum}) must be divisible by "
                f"num_generations ({self.num_generations}); change one of them"
            )
        return self


METHODS = ("sft", "distill", "grpo")
# A stage is one of the three, told apart by `method`: a field of another method (num_generations
# on an sft stage, teacher on a grpo stage) is refused, not ignored.
StageSettings = Annotated[SFTStage | DistillStage | GRPOStage, Field(discriminator="method")]


def stage(**fields) -> SFTStage | DistillStage | GRPOStage:
    """The stage `fields` describe (by their `method`), validated."""
    return TypeAdapter(StageSettings).validate_python(fields)


class PairsSettings(_Section):
    """Where the attribution pairs come from. Built once per run into output_dir/pairs.jsonl
    (every save is measured on the same inputs), in the model's own tokens."""

    mode: Literal["auto", "file", "numbers", "contrast"] = Field(
        "auto",
        description="auto: the world's pairs for the world model, else numbers. numbers: problems "
        "with their numbers redrawn (same token count). contrast: prompt + this model's sampled "
        "answer prefix against prompt + the reference model's (the paper's construction). "
        "file: a pairs file.",
    )
    file: str | None = Field(None, description="file mode: a pairs JSONL file.")
    sources: list[str] = Field(
        default_factory=list,
        description="Problems for numbers/contrast pairs: benchmark names (aime24, amc23, world), "
        "local files or hub ids; default: the evaluation benchmarks (evaluation.sources apply).",
    )
    reference: str | None = Field(
        None,
        description="contrast: model B (corrupted prefixes); default: the distillation teacher.",
    )
    n: int = Field(64, ge=1, description="Pairs to build.")
    prefix_tokens: int = Field(64, ge=1, description="contrast: answer-prefix tokens sampled.")
    seed: int = Field(0, ge=0, description="Seed of the redrawn numbers and the prefix sampling.")
    backend: Literal["vllm", "transformers"] = Field(
        "vllm", description="contrast: sampling engine."
    )
    levels: list[str] | None = Field(
        None,
        description="numbers/contrast: only problems whose level (or difficulty) is one of these, "
        "e.g. [1] for the world's easiest; default: every problem.",
    )

    @field_validator("levels", mode="before")
    @classmethod
    def _levels_as_text(cls, v):
        return [str(x) for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _check(self) -> PairsSettings:
        if self.mode == "file" and not self.file:
            raise ValueError("mode 'file' needs file: the path of a pairs JSONL file")
        return self


class PairsPlan(NamedTuple):
    """`snapshot.pairs` resolved against the rest of a run config (mode auto decided)."""

    mode: str  # file, numbers or contrast
    sources: list[str]  # file mode: [the file], or [] for the world's own pairs
    reference: str | None  # contrast: model B


class SnapshotSettings(SnapshotSpec):
    """The `snapshot:` section: what each save's circuit measures (`SnapshotSpec`, declared once
    in sparks/circuits/spec.py), whether and where it runs, and on which pairs."""

    enabled: bool = Field(True, description="Build a circuit snapshot at every save.")
    mode: Literal["inline", "process"] = Field(
        "inline",
        description="inline: snapshot the live model at each save; process: snapshot the saved "
        "checkpoint in its own process (sharded training, models too big to pause).",
    )
    pairs: PairsSettings | dict[str, PairsSettings] = Field(
        default_factory=PairsSettings,
        description="Attribution pairs (a path is short for {mode: file, file: PATH}); or several "
        "named sets, {NAME: pairs, ...}: every save then gets one circuit per set (the first is "
        "the run's primary circuit, in circuit/; the others in circuit-NAME/).",
    )

    def pair_sets(self) -> dict[str, PairsSettings]:
        """The pair sets by name, the primary first; the single form is one set named ''."""
        return dict(self.pairs) if isinstance(self.pairs, dict) else {"": self.pairs}

    def primary_set(self) -> str:
        """The primary pair set's name (the first; '' for the single form)."""
        return next(iter(self.pair_sets()))

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs_path(cls, v):
        def one(x):
            return {"mode": "file", "file": x} if isinstance(x, str) else x

        fields = set(PairsSettings.model_fields)
        if isinstance(v, dict) and v and not set(v) & fields:  # named sets
            bad = [k for k in v if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(k))]
            if bad:
                raise ValueError(f"pair set name {bad[0]!r}: use letters, digits, _ . -")
            return {k: PairsSettings.model_validate(one(x)) for k, x in v.items()}
        return one(v)


class EvaluationSettings(SamplingSpec):
    """The `evaluation:` section: how answers are sampled (`SamplingSpec`, declared once in
    sparks/evaluate/spec.py), on which benchmarks, how often and beside what."""

    enabled: bool = Field(True, description="Evaluate checkpoints on the benchmarks.")
    benchmarks: list[str] = Field(
        default_factory=lambda: [WORLD], description="e.g. world, aime24, amc23."
    )
    sources: dict[str, str] = Field(
        default_factory=dict,
        description="Local files for benchmarks, e.g. {aime24: data/aime24.jsonl}.",
    )
    limit: int | None = Field(
        None, ge=1, description="Evaluate only the first N problems of each benchmark."
    )
    every: int = Field(1, ge=1, description="Evaluate every k-th save.")
    backend: Literal["vllm", "transformers"] = Field("vllm", description="Generation engine.")
    overlong: Literal["skip", "error"] = Field(
        "skip",
        description="A prompt that with max_tokens exceeds the model's context: skip the problem "
        "(counted as skipped_overlong) or refuse the evaluation before the engine starts.",
    )
    concurrent: bool = Field(
        False,
        description="Evaluate a stage's saves while the next stage trains (and the base model "
        "while the first trains), instead of in between. For machines with room for both: a "
        "spare GPU, or gpu_memory_utilization set to what training leaves free.",
    )

    @model_validator(mode="after")
    def _check(self) -> EvaluationSettings:
        stray = [k for k in self.sources if k not in self.benchmarks]
        if stray:
            raise ValueError(
                f"sources names {stray[0]!r}, which is not in benchmarks "
                f"({', '.join(self.benchmarks)}): fix the name or add it to benchmarks"
            )
        if self.concurrent and self.backend != "vllm":
            raise ValueError(
                "concurrent evaluation needs backend 'vllm' (its own process); the transformers "
                "backend runs inside the training process and would share its random state: "
                "set backend: vllm or concurrent: false"
            )
        return self


class DistributedSettings(_Section):
    """Training on several processes. The main process (rank 0) builds the inputs, snapshots,
    evaluates and logs; every rank trains; the others wait for it at barriers."""

    processes: int = Field(
        1,
        ge=1,
        le=1024,
        description="Training processes on this machine. Above 1, each stage's training runs under "
        "`accelerate launch` (GPUs: one per process, NCCL; CPU: gloo); the flow's other steps run "
        "once, as before.",
    )
    launch_config: str = Field(
        "configs/accelerate/multi_gpu.yaml",
        min_length=1,
        description="accelerate config for the launch: multi_gpu.yaml (data parallel), fsdp.yaml "
        "(sharded, FSDP2), deepspeed_zero3.yaml (sharded, needs the gpu extra).",
    )
    timeout_minutes: float = Field(
        60,
        gt=0,
        description="How long a rank waits for the others: in training's collectives and while "
        "the main process snapshots, evaluates or writes. Size it so the longest snapshot or "
        "evaluation fits; past it the run stops with an error instead of hanging.",
    )


class ClusterSettings(_Section):
    """Where the per-checkpoint tasks of `analyze` and `evaluate-checkpoints` run: one after
    another here, on a local Dask cluster started for the flow run, or on an existing one."""

    workers: int = Field(
        1,
        ge=1,
        le=512,
        description="Checkpoints worked on at once by a local Dask cluster started for the flow "
        "run (one process per worker; on a GPU machine one GPU per worker, dask-cuda); 1: one "
        "after another, no cluster.",
    )
    address: str | None = Field(
        None,
        description="An existing Dask scheduler, e.g. tcp://10.0.0.5:8786, whose workers run the "
        "tasks (they need sparks installed and the checkpoints' paths); overrides workers.",
    )
    gpus_per_task: int = Field(
        0,
        ge=0,
        description="With address: each task asks for this many of a worker's 'GPU' resources "
        "(start GPU workers with `dask worker ADDRESS --resources GPU=1`, one per GPU).",
    )


class CheckpointSettings(_Section):
    """What each save keeps on disk. Circuits (`circuit/`), evaluations (`eval/`), the trainer
    state and the ledger are never removed; only optimizer/scheduler/RNG state and, if asked,
    weights, and only once a save is no longer needed for them (`sparks.train.retention`)."""

    keep_state: int = Field(
        1,
        ge=1,
        description="The newest saves of each stage that keep their optimizer, scheduler and RNG "
        "state (what resuming needs); older saves drop it as soon as a newer save is complete.",
    )
    keep_weights: bool = Field(
        True,
        description="Keep the weights of every save (analyses, ablations and evaluations read "
        "them). false: a save older than the newest keep_state drops its weights once its "
        "snapshot and evaluation are done; its circuit and evaluation stay.",
    )
    check_disk: bool = Field(
        True,
        description="Before training, refuse a run whose saves (under these settings) cannot fit "
        "in the free space at output_dir.",
    )


class TrackingSettings(_Section):
    mlflow_uri: str | None = Field(
        None, description="MLflow tracking URI; default: ./mlflow/data (a file store)."
    )
    experiment: str = Field("sparks", min_length=1, description="MLflow experiment name.")


class RunConfig(_Section):
    """A whole sparks run: what to train, how to snapshot and evaluate it, where to log it."""

    name: str = Field("run", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Run name.")
    seed: int = Field(0, ge=0, description="Training seed.")
    output_dir: str = Field("runs/run", description="Checkpoints, snapshots and ledgers go here.")
    world: WorldSettings = WorldSettings()
    model: ModelSettings = ModelSettings()
    data: DataSettings = DataSettings()
    stages: list[StageSettings] = Field(
        default_factory=lambda: [stage(method="sft")],
        min_length=1,
        description="Run in order.",
    )
    snapshot: SnapshotSettings = SnapshotSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    tracking: TrackingSettings = TrackingSettings()
    distributed: DistributedSettings = DistributedSettings()
    checkpoints: CheckpointSettings = CheckpointSettings()

    def resolved_pairs(self, p: PairsSettings | None = None) -> PairsPlan:
        """Which pairs this run builds (for pair set `p`, default the primary): mode auto is the
        world's pairs for the world model and numbers pairs for any other; sources default to the
        evaluation benchmarks; the contrast reference to the distillation teacher."""
        p = p or next(iter(self.snapshot.pair_sets().values()))
        mode = p.mode if p.mode != "auto" else ("file" if self.model.path == WORLD else "numbers")
        if mode == "file":
            sources = [p.file] if p.file else []
        else:
            sources = list(p.sources or self.evaluation.benchmarks)
        reference = p.reference or next(
            (s.teacher for s in self.stages if isinstance(s, DistillStage)), None
        )
        return PairsPlan(mode, sources, reference)

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        metric = self.snapshot.metric
        for name, p in self.snapshot.pair_sets().items():
            plan, where = self.resolved_pairs(p), f"snapshot.pairs{'.' + name if name else ''}"
            if metric in ("logit_diff", "logprob") and plan.mode != "file":
                raise ValueError(
                    f"snapshot.metric {metric} compares answer tokens, which {plan.mode} pairs "
                    f"({where}) do not have: use metric kl, kl_prefix or auto"
                )
            if plan.mode == "contrast" and plan.reference is None:
                raise ValueError(
                    f"{where}.mode contrast needs a reference model: set {where}.reference"
                )
        return self


def load_config(path: str | Path, *, model: type[BaseModel] | None = None, **overrides):
    """Read and validate a YAML run config (or another config `model`, e.g. CompareConfig);
    top-level `overrides` replace the file's values."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {path} not found: pass the path of a YAML file such as configs/demo.yaml"
        )
    try:
        raw = yaml.load(path.read_text(), Loader=_unique_keys_loader()) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(e, 'problem', e)}") from e
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of settings at the top level, got {type(raw).__name__}"
        )
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return validate_config(raw, source=str(path), model=model)


def _unique_keys_loader():
    """yaml's safe loader, except that a key written twice in one mapping is an error (plain
    YAML keeps the last: two pair sets of one name silently became one)."""
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"{key!r} is given twice in one mapping: keep one",
                        key_node.start_mark,
                    )  # fmt: skip
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeys


def _union_tag(part) -> bool:
    return isinstance(part, str) and (
        part.startswith(
            ("constrained-", "literal[", "function-")
        )  # function-after[...]: a validator
        or part in ("int", "str", "float")
    )


def validate_config(raw: dict, *, source: str = "config", model: type[BaseModel] | None = None):
    """Validate a mapping as a RunConfig (or `model`); the error names the first bad field and what to do."""
    try:
        return (model or RunConfig).model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        # a union's member tags (constrained-int, literal['auto']) are not field names
        loc = [p for p in err["loc"] if not _union_tag(p)]
        # a stage's method picks its kind: stages.0.sft.teacher is said as stages.0.teacher
        kind = loc.pop(2) if len(loc) > 2 and loc[0] == "stages" and loc[2] in METHODS else None
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and kind:
            msg = f"not a setting of a {kind} stage: remove it or change the stage's method"
        elif err["type"] == "extra_forbidden":
            msg = "unknown setting: check its spelling against configs/demo.yaml"
        elif err["type"] == "missing" and kind:
            msg = f"a {kind} stage needs it"
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):  # a stage's method
            tag = err.get("ctx", {}).get("discriminator", "'method'").strip("'")
            field += f".{tag}"
            got = err.get("ctx", {}).get("tag")
            msg = (
                f"{got!r} is not a stage method: use {', '.join(METHODS)}"
                if got
                else (f"every stage needs a {tag}: {', '.join(METHODS)}")
            )
        elif "input" in err and err["type"] != "missing":
            msg += f" (got {err['input']!r})"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{source}: {field}: {msg}{more}") from None


class AblationConfig(_Section):
    """An ablation study: evaluate a model as it is and with a set of heads scaled."""

    name: str = Field(
        "ablation", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Study name."
    )
    model: str = Field(description="The model: a checkpoint directory (or a hub id).")
    heads: list[str] = Field(
        default_factory=list, description="Heads as L{layer}H{head}; or use heads_from."
    )
    heads_from: str | None = Field(
        None,
        description="A training run's output_dir (its emergent heads at the last save), a "
        "snapshot directory (its circuit heads), or a compare report directory (with head_set).",
    )
    head_set: str | None = Field(
        None,
        description="With heads_from a compare report: the head set by name (its head_sets.json "
        "lists them, e.g. 'demo.sft/emergent', 'think/compensatory').",
    )
    max_heads: int | None = Field(
        None,
        ge=1,
        description="With heads_from a training run: only its `max_heads` emergent heads with the "
        "largest |score| at the last save (a small model breaks when many heads go at once).",
    )
    scales: list[float] = Field(
        default_factory=lambda: [0.0],
        min_length=1,
        description="0 ablates; 0.5 halves; 1.3 amplifies.",
    )
    control: Literal["none", "random"] = Field(
        "none",
        description="random: a random-head control beside the heads: `draws` sets of as many heads, "
        "drawn from outside the circuit (outside the heads themselves where the circuit leaves too "
        "few), scaled alike at each of `control_scales`, so an effect can be told from chance.",
    )
    draws: int = Field(3, ge=1, le=50, description="Random-head control: sets drawn.")
    control_scales: list[float] | None = Field(
        None, min_length=1, description="Random-head control: the scales it runs at (default: all)."
    )
    control_seed: int = Field(0, ge=0, description="Random-head control: seed of the draws.")
    output_dir: str = Field(
        "runs/ablation", description="Edited checkpoints and evaluation tables go here."
    )
    enable_thinking: bool | None = Field(
        None,
        description="Qwen3-style chat templates: evaluate every variant with thinking on (true) "
        "or off (false), e.g. a think-off model's compensatory heads; None: the template's default.",
    )
    evaluation: EvaluationSettings = EvaluationSettings()
    tracking: TrackingSettings = TrackingSettings()

    @model_validator(mode="after")
    def _check(self) -> AblationConfig:
        if bool(self.heads) == bool(self.heads_from):
            raise ValueError(
                "give exactly one of heads (e.g. [L12H3, L14H0]) or heads_from (a run or snapshot directory)"
            )
        if self.control_scales and not set(self.control_scales) <= set(self.scales):
            raise ValueError(
                f"control_scales {self.control_scales} must be among scales {self.scales}"
            )
        return self


class ThinkSettings(_Section):
    """Think on/off: one model's circuits and accuracy with `enable_thinking` on and off (Qwen3-style
    chat templates), on the same problems."""

    model: str = Field(description="The model: a checkpoint directory, a hub id, or 'world'.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights' dtype for the snapshots (bfloat16 on a GPU)."
    )
    pairs: PairsSettings = Field(
        default_factory=lambda: PairsSettings(mode="numbers"),
        description="Pairs, built twice from the same problems: once with each template "
        "(numbers or contrast; sources default to the evaluation benchmarks).",
    )
    snapshot: SnapshotSettings = SnapshotSettings()
    evaluation: EvaluationSettings = EvaluationSettings()

    @model_validator(mode="after")
    def _check(self) -> ThinkSettings:
        if self.pairs.mode in ("auto", "file"):
            raise ValueError(
                "think.pairs.mode must be numbers or contrast: the pairs are built with each "
                "template, so they cannot come from one file"
            )
        if self.pairs.mode == "contrast" and not self.pairs.reference:
            raise ValueError("think.pairs.mode contrast needs think.pairs.reference (model B)")
        return self


class CompareConfig(_Section):
    """A comparison report over runs and checkpoints with a common base (`sparks compare`)."""

    name: str = Field(
        "compare", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Report name."
    )
    runs: list[str] = Field(
        default_factory=list,
        description="Run directories (each stage counts as a run), checkpoint or snapshot "
        "directories (consecutive ones under one folder form one series), or MLflow runs as "
        "mlflow:RUN_ID.",
    )
    base: str | None = Field(
        None,
        description="The common base: a checkpoint directory with circuit/, or a snapshot "
        "directory; default: the runs' own base snapshot.",
    )
    stability: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Bootstrap stability a head needs to count in the 'stable' head counts.",
    )
    output_dir: str = Field("runs/compare", description="The report goes here.")
    think: ThinkSettings | None = Field(
        None, description="Also compare one model with thinking on and off."
    )
    tracking: TrackingSettings = Field(
        default_factory=lambda: TrackingSettings(experiment="sparks-compare"),
        description="MLflow: the report is logged as its own run.",
    )

    @model_validator(mode="after")
    def _check(self) -> CompareConfig:
        if not self.runs and self.think is None:
            raise ValueError(
                "nothing to compare: give runs (run or checkpoint directories) and/or think"
            )
        return self
