"""Circuits: the graph of a live Hugging Face decoder, EAP-IG attribution, circuits, snapshots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sparks.circuits.spec import DEFAULTS, SnapshotSpec


def snapshot_checkpoint(
    model_dir: str | Path,
    pairs_path: str | Path,
    out_dir: str | Path,
    spec: SnapshotSpec = DEFAULTS,
    *,
    step: int = 0,
    dtype: str = "float32",
    record_failure: bool = False,
    progress: bool = True,
    pair_set: str = "",
    more_sets: Sequence[dict] = (),
):
    """Load a checkpoint and a pairs file, build its CircuitSnapshot as `spec` says and write it
    to `out_dir`.

    Every input is checked before any work starts; nothing is written unless all of it succeeds.
    A model whose numbers are NaN/inf raises NonFiniteError, or with `record_failure` leaves a
    failed snapshot (what the training hook's process mode wants) and returns it. `pair_set`:
    the name of the pair set the file holds, recorded with the file's hash in the snapshot.
    `more_sets`: further sets ({name, pairs, out, metric}) snapshotted from the same loaded model
    (one load and one preparation for all of a save's sets); returns the first set's snapshot."""
    from sparks.circuits.adapters import check_architecture
    from sparks.circuits.batches import encode_pairs, load_pairs, pairs_record
    from sparks.circuits.metrics import METRICS, choose_metric
    from sparks.circuits.snapshot import (
        build_or_fail,
        build_snapshot,
        model_fingerprint,
        save_snapshot,
    )
    from sparks.models.loading import check_checkpoint, load_model, load_tokenizer

    sets: list[dict[str, Any]] = [
        {"name": pair_set, "pairs": pairs_path, "out": out_dir, "metric": spec.metric}
    ]
    sets += [dict(x) for x in more_sets]
    for s in sets:
        if Path(s["out"]).exists():
            raise FileExistsError(
                f"{s['out']} already exists: snapshots are never overwritten; choose another --out"
            )
        if s["metric"] != "auto" and s["metric"] not in METRICS:
            raise ValueError(f"unknown metric {s['metric']!r}: use one of {', '.join(METRICS)}")
    check_checkpoint(model_dir)
    check_architecture(model_dir)
    tokenizer = load_tokenizer(model_dir)
    for s in sets:
        s["records"] = load_pairs(s["pairs"])[: spec.n_pairs]
        s["batches"] = encode_pairs(
            tokenizer, s["records"], batch_size=spec.batch_size, source=str(s["pairs"])
        )
        s["spec"] = spec.with_(metric=choose_metric(s["metric"], s["batches"]))
    model = load_model(model_dir, dtype=dtype, device=spec.device)
    device = next(model.parameters()).device
    build: Callable[..., Any] = build_or_fail if record_failure else build_snapshot
    fingerprint = model_fingerprint(model) if len(sets) > 1 else None  # once for all sets
    first = None
    for s in sets:
        snap = build(
            model,
            [b.to(device) for b in s["batches"]],
            s["spec"],
            step=step,
            progress=progress,
            pairs=pairs_record(s["pairs"], name=s["name"], n_pairs=len(s["records"])),
            fingerprint=fingerprint,
        )
        save_snapshot(snap, s["out"])
        first = first or snap
    return first
