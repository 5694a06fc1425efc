"""Pair sets: a run may measure every save on several named sets of pairs (one per task, one per
difficulty), each giving its own circuit. The first set is the run's primary circuit and keeps
the one-set layout; the others sit beside it:

    checkpoint-N/circuit/          the primary set's snapshot (the only one of a one-set run)
    checkpoint-N/circuit-NAME/     set NAME's snapshot
    OUTPUT_DIR/pairs.jsonl, pairs-NAME.jsonl
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparks.circuits.pairs import PairBatch

PRIMARY_DIR = "circuit"


@dataclass
class PairSet:
    """One set's encoded pairs and snapshot settings, and where its snapshots go."""

    name: str  # '' for a one-set run
    subdir: str  # circuit, or circuit-NAME
    pairs_path: Path
    batches: list[PairBatch] = field(repr=False)
    settings: dict = field(default_factory=dict)


def encode_set(name: str, path: Path, tokenizer, snapshot, *, primary: bool) -> PairSet:
    """Pair set `name` from its pairs file: the first `snapshot.n_pairs` pairs encoded in batches,
    and the snapshot settings (the metric chosen for these pairs when `snapshot.metric` is auto)."""
    from sparks.circuits.attribute import choose_metric
    from sparks.circuits.pairs import encode_pairs, load_pairs, pairs_record

    pairs = load_pairs(path)[: snapshot.n_pairs]
    batches = encode_pairs(tokenizer, pairs, batch_size=snapshot.batch_size, source=str(path))
    settings = dict(
        steps=snapshot.steps,
        steps_tolerance=snapshot.steps_tolerance,
        max_steps=snapshot.max_steps,
        metric=choose_metric(snapshot.metric, batches),
        top_k=snapshot.top_k,
        schedule=snapshot.schedule,
        tokens_per_pass=snapshot.tokens_per_pass,
        pairs=pairs_record(path, name=name, n_pairs=len(pairs)),
    )
    return PairSet(name, subdir(name, primary=primary), Path(path), batches, settings)


def subdir(name: str, *, primary: bool) -> str:
    return PRIMARY_DIR if primary else f"{PRIMARY_DIR}-{name}"


def snapshot_dirs(save: Path, sets: list[str]) -> list[tuple[str, Path]]:
    """(set, snapshot directory) of every set that has a snapshot in `save` (a checkpoint or base/)."""
    found = []
    for i, name in enumerate(sets):
        d = Path(save) / subdir(name, primary=i == 0)
        if d.is_dir():
            found.append((name, d))
    return found
