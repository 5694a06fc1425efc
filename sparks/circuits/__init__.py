"""Circuits: the graph of a live Hugging Face decoder, EAP-IG attribution, circuits, snapshots."""

from __future__ import annotations

from pathlib import Path

from sparks.config import DEFAULT_SCHEDULE


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
    max_steps: int = 81,
    tokens_per_pass: int | None = None,
    device: str | None = None,
    record_failure: bool = False,
    progress: bool = True,
    pair_set: str = "",
):
    """Load a checkpoint and a pairs file, build its CircuitSnapshot and write it to `out_dir`.

    Every input is checked before any work starts; nothing is written unless all of it succeeds.
    A model whose numbers are NaN/inf raises NonFiniteError, or with `record_failure` leaves a
    failed snapshot (what the training hook's process mode wants) and returns it. `pair_set`:
    the name of the pair set the file holds, recorded with the file's hash in the snapshot."""
    from sparks.circuits.adapters import check_architecture
    from sparks.circuits.attribute import METRICS, choose_metric, ig_alphas
    from sparks.circuits.pairs import encode_pairs, load_pairs, pairs_record
    from sparks.circuits.snapshot import build_or_fail, build_snapshot, save_snapshot
    from sparks.models import check_checkpoint, load_model, load_tokenizer

    if Path(out_dir).exists():
        raise FileExistsError(
            f"{out_dir} already exists: snapshots are never overwritten; choose another --out"
        )
    if metric != "auto" and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    # refuses an unknown schedule or steps < 1 before any loading
    ig_alphas(1 if steps == "auto" else steps, schedule)
    check_checkpoint(model_dir)
    check_architecture(model_dir)
    pairs = load_pairs(pairs_path)[:n_pairs]
    batches = encode_pairs(
        load_tokenizer(model_dir), pairs, batch_size=batch_size, source=str(pairs_path)
    )
    metric = choose_metric(metric, batches)
    model = load_model(model_dir, dtype=dtype, device=device)
    device = next(model.parameters()).device
    batches = [b.to(device) for b in batches]
    build = build_or_fail if record_failure else build_snapshot
    snap = build(
        model,
        batches,
        step=step,
        steps=steps,
        metric=metric,
        top_k=top_k,
        schedule=schedule,
        tokens_per_pass=tokens_per_pass,
        progress=progress,
        steps_tolerance=steps_tolerance,
        max_steps=max_steps,
        pairs=pairs_record(pairs_path, name=pair_set, n_pairs=len(pairs)),
    )
    save_snapshot(snap, out_dir)
    return snap
