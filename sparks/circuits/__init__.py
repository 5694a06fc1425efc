"""Circuits: the graph of a live Hugging Face decoder, EAP-IG attribution, circuits, snapshots."""

from __future__ import annotations

from pathlib import Path

from sparks.config import DEFAULT_SCHEDULE, MAX_IG_STEPS


def snapshot_checkpoint(
    model_dir: str | Path,
    pairs_path: str | Path,
    out_dir: str | Path,
    *,
    steps: int | str = "auto",
    top_k: int = 200,
    batch_size: int = 16,
    metric: str = "auto",
    n_pairs: int | None = None,
    step: int = 0,
    dtype: str = "float32",
    schedule: str = DEFAULT_SCHEDULE,
    steps_tolerance: float = 0.02,
    max_steps: int = MAX_IG_STEPS,
    tokens_per_pass: int | None = None,
    device: str | None = None,
    record_failure: bool = False,
    progress: bool = True,
    pair_set: str = "",
    more_sets: list[dict] = (),
):
    """Load a checkpoint and a pairs file, build its CircuitSnapshot and write it to `out_dir`.

    Every input is checked before any work starts; nothing is written unless all of it succeeds.
    A model whose numbers are NaN/inf raises NonFiniteError, or with `record_failure` leaves a
    failed snapshot (what the training hook's process mode wants) and returns it. `pair_set`:
    the name of the pair set the file holds, recorded with the file's hash in the snapshot.
    `more_sets`: further sets ({name, pairs, out, metric}) snapshotted from the same loaded model
    (one load and one preparation for all of a save's sets); returns the first set's snapshot."""
    from sparks.circuits.adapters import check_architecture
    from sparks.circuits.attribute import METRICS, choose_metric, ig_alphas
    from sparks.circuits.pairs import encode_pairs, load_pairs, pairs_record
    from sparks.circuits.snapshot import (
        build_or_fail,
        build_snapshot,
        model_fingerprint,
        save_snapshot,
    )
    from sparks.models import check_checkpoint, load_model, load_tokenizer

    sets = [{"name": pair_set, "pairs": pairs_path, "out": out_dir, "metric": metric}]
    sets += [dict(x) for x in more_sets]
    for s in sets:
        if Path(s["out"]).exists():
            raise FileExistsError(
                f"{s['out']} already exists: snapshots are never overwritten; choose another --out"
            )
        if s["metric"] != "auto" and s["metric"] not in METRICS:
            raise ValueError(f"unknown metric {s['metric']!r}: use one of {', '.join(METRICS)}")
    # refuses an unknown schedule or steps < 1 before any loading
    ig_alphas(1 if steps == "auto" else steps, schedule)
    for name, value, low in (
        ("top_k", top_k, 1),
        ("max_steps", max_steps, 1),
        ("batch_size", batch_size, 1),
        ("n_pairs", n_pairs or 1, 1),
    ):
        if value < low:
            raise ValueError(
                f"{name} {value}: must be at least {low} (--{name.replace('_', '-')} N)"
            )  # fmt: skip
    if not 0 < steps_tolerance <= 1:
        raise ValueError(
            f"steps_tolerance {steps_tolerance}: give a completeness error in (0, 1], e.g. 0.02"
        )
    check_checkpoint(model_dir)
    check_architecture(model_dir)
    tokenizer = load_tokenizer(model_dir)
    for s in sets:
        s["records"] = load_pairs(s["pairs"])[:n_pairs]
        s["batches"] = encode_pairs(
            tokenizer, s["records"], batch_size=batch_size, source=str(s["pairs"])
        )
        s["metric"] = choose_metric(s["metric"], s["batches"])
    model = load_model(model_dir, dtype=dtype, device=device)
    device = next(model.parameters()).device
    build = build_or_fail if record_failure else build_snapshot
    fingerprint = model_fingerprint(model) if len(sets) > 1 else None  # once for all sets
    first = None
    for s in sets:
        snap = build(
            model,
            [b.to(device) for b in s["batches"]],
            step=step,
            steps=steps,
            metric=s["metric"],
            top_k=top_k,
            schedule=schedule,
            tokens_per_pass=tokens_per_pass,
            progress=progress,
            steps_tolerance=steps_tolerance,
            max_steps=max_steps,
            pairs=pairs_record(s["pairs"], name=s["name"], n_pairs=len(s["records"])),
            fingerprint=fingerprint,
        )
        save_snapshot(snap, s["out"])
        first = first or snap
    return first
