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

from sparks.circuits.batches import PairBatch
from sparks.circuits.spec import SnapshotSpec

PRIMARY_DIR = "circuit"


@dataclass
class PairSet:
    """One set's encoded pairs, what its snapshots measure, and where they go."""

    name: str  # '' for a one-set run
    subdir: str  # circuit, or circuit-NAME
    pairs_path: Path
    batches: list[PairBatch] = field(repr=False)
    spec: SnapshotSpec  # the run's snapshot spec, its metric chosen for these pairs
    record: dict  # `pairs.pairs_record`: the set's name, file and hash, kept in every snapshot


def encode_set(name: str, path: Path, tokenizer, spec: SnapshotSpec, *, primary: bool) -> PairSet:
    """Pair set `name` from its pairs file: the first `spec.n_pairs` pairs encoded in batches, and
    the spec with its metric chosen for these pairs when `spec.metric` is auto."""
    from sparks.circuits.batches import encode_pairs, load_pairs, pairs_record
    from sparks.circuits.metrics import choose_metric

    pairs = load_pairs(path)[: spec.n_pairs]
    batches = encode_pairs(tokenizer, pairs, batch_size=spec.batch_size, source=str(path))
    chosen = spec.snapshot_fields().with_(metric=choose_metric(spec.metric, batches))
    record = pairs_record(path, name=name, n_pairs=len(pairs))
    return PairSet(name, subdir(name, primary=primary), Path(path), batches, chosen, record)


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
