"""Build the embedded world on disk: tokenizer + pretrained tiny base model, task splits, pairs.

The base model is the world's model organism (`sparks.world.pretrain`): a tiny Qwen2 pretrained on
plain-text arithmetic, so post-training has skills to reveal; it is shared by every world of one
seed and shape (the split sizes do not change it), shipped or built once.

Layout of a world directory (written atomically: a temporary name, then a rename):

    model/            an ordinary checkpoint directory (config, safetensors, tokenizer, chat template)
    tasks/train.jsonl tasks/test.jsonl    {id, problem, answer, solution, level}
    pairs.jsonl       {id, template, clean, corrupted, clean_answer, corrupted_answer}
    world.json        what was built, with which seed and sizes
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sparks.files import atomic_dir, read_jsonl, write_jsonl
from sparks.models.loading import load_tokenizer, tokenizer_fingerprint
from sparks.world.model import TinyModelSpec
from sparks.world.pretrain import MANIFEST as BASE_MANIFEST
from sparks.world.pretrain import PretrainSpec, base_key, build_base
from sparks.world.tasks import corpus as task_corpus
from sparks.world.tasks import generate_pairs, generate_splits
from sparks.world.tokenizer import train_tokenizer

MANIFEST = "world.json"


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a world; equal specs build identical worlds."""

    seed: int = 0
    n_train: int = 2000
    n_test: int = 200
    n_pairs: int = 64
    vocab_size: int = 512
    model: TinyModelSpec = field(default_factory=TinyModelSpec)
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def base_key(self) -> str:
        return base_key(self.seed, self.vocab_size, self.model, self.pretrain)


@dataclass(frozen=True)
class World:
    """Paths into a built world directory."""

    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def pairs_path(self) -> Path:
        return self.root / "pairs.jsonl"

    def tasks_path(self, split: str) -> Path:
        return self.root / "tasks" / f"{split}.jsonl"

    def tasks(self, split: str) -> list[dict]:
        return read_jsonl(self.tasks_path(split))

    def pairs(self) -> list[dict]:
        return read_jsonl(self.pairs_path)

    def spec(self) -> dict:
        return json.loads((self.root / MANIFEST).read_text())["spec"]


def build_world(out_dir: Path, spec: WorldSpec = WorldSpec(), bases: Path | None = None) -> World:
    """Build the world described by `spec` into `out_dir`; its base model comes from the shipped
    bases or is pretrained once into `bases` (default: `out_dir`'s parent / "bases").

    An existing world built from the same spec is reused as it is; any other existing directory
    is left untouched and refused.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        manifest = out_dir / MANIFEST
        if manifest.is_file() and json.loads(manifest.read_text()).get("spec") == spec.to_dict():
            return World(out_dir)
        raise FileExistsError(
            f"{out_dir} exists and is not a world built with these settings: "
            "remove it or choose another directory"
        )
    splits = generate_splits(spec.n_train, spec.n_test, seed=spec.seed)
    base = build_base(
        bases or out_dir.parent / "bases", spec.seed, spec.vocab_size, spec.model, spec.pretrain,
        lambda: train_tokenizer(task_corpus(spec.seed), vocab_size=spec.vocab_size),
    )  # fmt: skip
    tokenizer = load_tokenizer(base)
    pairs = generate_pairs(tokenizer, spec.n_pairs, seed=spec.seed)
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(base, tmp / "model", ignore=shutil.ignore_patterns(BASE_MANIFEST))
        fingerprint = tokenizer_fingerprint(load_tokenizer(tmp / "model"))  # as users load it
        (tmp / "tasks").mkdir()
        for name, tasks in splits.items():
            write_jsonl(tmp / "tasks" / f"{name}.jsonl", (t.to_record() for t in tasks))
        # the tokenizer's fingerprint: these pairs are refused with any other model's tokenizer
        write_jsonl(
            tmp / "pairs.jsonl", (p.to_record() | {"tokenizer": fingerprint} for p in pairs)
        )
        summary = {k: len(v) for k, v in splits.items()} | {"pairs": len(pairs)}
        base_info = json.loads((base / BASE_MANIFEST).read_text())
        (tmp / MANIFEST).write_text(
            json.dumps({"spec": spec.to_dict(), "counts": summary, "base": base_info}, indent=2)
        )
    return World(out_dir)


def world_name(spec: WorldSpec) -> str:
    """The directory name of `spec`'s world in the shared cache."""
    # v2: pairs carry the tokenizer's fingerprint; v3: the chat template honours enable_thinking;
    # v4: the pretrained base and its levels (earlier caches are rebuilt, not reused)
    return f"v4-{spec.base_key}-train{spec.n_train}-test{spec.n_test}-pairs{spec.n_pairs}"


def spec_of(settings) -> WorldSpec:
    """The WorldSpec of a run config's `world` settings."""
    return WorldSpec(
        seed=settings.seed, n_train=settings.n_train, n_test=settings.n_test,
        n_pairs=settings.n_pairs,
        pretrain=PretrainSpec(steps=settings.pretrain_steps),
    )  # fmt: skip


def world_for(settings, cache_root: Path = Path("artifacts/worlds")) -> World:
    """The world a run config's `world` settings describe, built once into a shared cache."""
    spec = spec_of(settings)
    return build_world(Path(cache_root) / world_name(spec), spec)
