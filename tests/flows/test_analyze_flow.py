"""The `analyze` flow for real: existing checkpoints snapshotted, emergent heads against a base."""

from __future__ import annotations

import shutil
from pathlib import Path

from sparks.circuits.snapshot import read_snapshot


def test_analyze_snapshots_checkpoints_and_lists_emergent_heads(trained_run, tmp_path):
    from sparks.flows.analyze import AnalyzeConfig, analyze

    run = Path(trained_run.cfg.output_dir)
    ckpt = tmp_path / "checkpoint-4"  # a checkpoint without its snapshot, as from another trainer
    shutil.copytree(
        run / "stage0-sft" / "checkpoint-4", ckpt, ignore=shutil.ignore_patterns("circuit", "eval")
    )
    base = tmp_path / "base"
    shutil.copytree(run / "base", base)  # holds circuit/: kept, not redone
    s = trained_run.cfg.snapshot
    cfg = AnalyzeConfig(
        checkpoints=[str(ckpt)],
        base=str(base),
        pairs=str(run / "pairs.jsonl"),
        snapshot=s.model_copy(update={"metric": "logit_diff"}),
    )
    out = analyze(cfg)
    snap = read_snapshot(ckpt / "circuit")
    assert out["heads"][str(ckpt)] == list(snap.heads)
    base_heads = set(read_snapshot(base / "circuit").heads)
    assert out["emergent"][str(ckpt)] == [h for h in snap.heads if h not in base_heads]
    # the same model, pairs and settings as the run's own snapshot of that save: the same circuit
    assert snap.heads == read_snapshot(run / "stage0-sft" / "checkpoint-4" / "circuit").heads
