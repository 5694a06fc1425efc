"""The world's base model: the tiny network pretrained on the world's plain-text corpus.

A math base model (Qwen2.5-Math-1.5B in the paper) knows arithmetic but does not answer in the
chat format; post-training teaches the format and sharpens the skill. The world's base is built
the same way, so that post-training has something to reveal:

1. corpus: `tasks.pretrain_documents` (arithmetic facts and worked solutions, no chat template,
   no \\boxed{}), tokenized and joined with <|endoftext|> into one stream;
2. training: next-token loss on random windows of the stream, AdamW with a short warm-up and a
   cosine decay, gradient clipping; every random draw comes from `seed`, so the same spec on the
   same machine gives the same weights;
3. a check: greedy answers to held-out problems in the corpus' own format, per level (the base's
   skill, recorded in `base.json`).

Bases are stored by a key of everything that determines them: one shipped with sparks
(`sparks/world/bases/`, a few MB) is copied instead of retrained; any other is trained once into
a cache beside the worlds that use it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from sparks.files import atomic_dir
from sparks.world.model import TinyModelSpec, build_model
from sparks.world.tasks import PLAIN_PREFIX, generate_tasks, pretrain_documents

SHIPPED = Path(__file__).parent / "bases"
MANIFEST = "base.json"
# bump when the corpus or the training loop changes in a way the spec does not show
RECIPE = 2


@dataclass(frozen=True)
class PretrainSpec:
    """How the base is pretrained; `steps: 0` keeps the random initialisation (a bare network)."""

    steps: int = 2400
    batch_size: int = 16
    seq_len: int = 96
    learning_rate: float = 3e-3
    warmup: int = 50
    documents: int = 40000


def base_key(seed: int, vocab_size: int, model: TinyModelSpec, pretrain: PretrainSpec) -> str:
    """A short name for everything that determines a base model."""
    blob = json.dumps(
        {"seed": seed, "vocab": vocab_size, "model": asdict(model),
         "pretrain": asdict(pretrain), "recipe": RECIPE},
        sort_keys=True,
    )  # fmt: skip
    return f"seed{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def corpus_fingerprint(seed: int, n: int = 200) -> str:
    """A hash of the corpus' first `n` documents: a shipped base is stale when this changes."""
    return hashlib.sha256("\n".join(pretrain_documents(n, seed=seed)).encode()).hexdigest()[:16]


def _stream(tokenizer, docs: list[str]):
    import torch

    eot = tokenizer.pad_token_id  # <|endoftext|>
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eot)
    return torch.tensor(ids, dtype=torch.long)


def pretrain(model, tokenizer, spec: PretrainSpec, *, seed: int, progress: bool = True) -> dict:
    """Train `model` in place on the world's corpus; returns the loss at the start and the end."""
    import math

    import torch
    from tqdm.auto import tqdm

    if spec.steps == 0:
        return {"steps": 0}
    stream = _stream(tokenizer, pretrain_documents(spec.documents, seed=seed))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(
        model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95), weight_decay=0.01
    )

    def lr_at(step: int) -> float:
        if step < spec.warmup:
            return spec.learning_rate * (step + 1) / spec.warmup
        done = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return spec.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * done)))

    model.train()
    losses = []
    bar = tqdm(range(spec.steps), desc="pretraining the world's base", disable=not progress)
    offsets = torch.arange(spec.seq_len + 1)
    for step in bar:
        starts = torch.randint(0, len(stream) - spec.seq_len - 1, (spec.batch_size,), generator=gen)
        window = stream[starts[:, None] + offsets]  # [batch, seq_len + 1]
        logits = model(input_ids=window[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1)
        )
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    tail = losses[-50:]
    return {"steps": spec.steps, "loss_first": losses[0], "loss_last": sum(tail) / len(tail)}


def plain_skill(model, tokenizer, *, seed: int, n: int = 150) -> dict[str, float]:
    """Greedy accuracy per level on the first `n` test problems, asked in the corpus' own format
    ("Problem: ... Solution:"): what the base can do before it learns the chat format."""
    import torch

    tasks = generate_tasks(n, seed=seed, split="test")
    prompts = [f"Problem: {t.problem}\nSolution:" for t in tasks]
    tokenizer.padding_side = "left"
    right: dict[int, list[bool]] = {}
    with torch.no_grad():
        for i in range(0, n, 50):
            batch = tokenizer(prompts[i : i + 50], return_tensors="pt", padding=True)
            out = model.generate(
                **batch, max_new_tokens=64, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            for t, ids in zip(
                tasks[i : i + 50], out[:, batch["input_ids"].shape[1] :], strict=True
            ):
                text = tokenizer.decode(ids, skip_special_tokens=True)
                answer = (
                    text.split(PLAIN_PREFIX)[-1].split(".")[0].strip()
                    if PLAIN_PREFIX in text
                    else None
                )
                right.setdefault(t.level, []).append(answer == t.answer)
    return {f"level {k}": sum(v) / len(v) for k, v in sorted(right.items())}


def build_base(
    cache_root: Path, seed: int, vocab_size: int, model: TinyModelSpec, spec: PretrainSpec,
    tokenizer_factory, use_shipped: bool = True,
) -> Path:  # fmt: skip
    """The directory of the base model (weights and tokenizer) for these settings: the shipped one
    if it matches (and `use_shipped`), else one trained once into `cache_root/KEY` (written
    atomically)."""
    key = base_key(seed, vocab_size, model, spec)
    shipped = SHIPPED / key
    if use_shipped and (shipped / MANIFEST).is_file():
        return shipped
    target = Path(cache_root) / key
    if (target / MANIFEST).is_file():
        return target
    import time

    import torch

    t0 = time.perf_counter()
    tokenizer = tokenizer_factory()
    net = build_model(model, tokenizer, seed=seed)
    with torch.random.fork_rng():
        trained = pretrain(net, tokenizer, spec, seed=seed)
        skill = plain_skill(net, tokenizer, seed=seed) if spec.steps else {}
    with atomic_dir(target) as tmp:
        net.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / MANIFEST).write_text(
            json.dumps(
                {"key": key, "seed": seed, "vocab_size": vocab_size, "model": asdict(model),
                 "pretrain": asdict(spec), "recipe": RECIPE,
                 "corpus": corpus_fingerprint(seed), "training": trained,
                 "plain_skill": skill, "seconds": round(time.perf_counter() - t0, 1)},
                indent=2,
            )
        )  # fmt: skip
    return target


def ship(base_dir: Path) -> Path:
    """Copy a built base into the package (`sparks/world/bases/KEY`), so worlds reuse it."""
    manifest = json.loads((Path(base_dir) / MANIFEST).read_text())
    target = SHIPPED / manifest["key"]
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(base_dir, target)
    return target
