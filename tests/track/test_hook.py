"""The checkpoint hook: a snapshot at every save, and training exactly as without it."""

from __future__ import annotations

import pytest

from sparks.circuits.snapshot import read_snapshot
from sparks.circuits.spec import SnapshotSpec
from sparks.config import stage
from sparks.models.loading import load_model
from sparks.problems.sources import load_problems
from sparks.track.hook import CircuitSnapshotCallback
from sparks.train.trainers import build_trainer

STAGES = {
    "sft": stage(method="sft", max_steps=6, save_steps=2, learning_rate=3e-3, batch_size=8),
    "grpo": stage(
        method="grpo",
        max_steps=4,
        save_steps=2,
        learning_rate=1e-4,
        batch_size=8,
        num_generations=4,
        max_completion_length=16,
    ),
}


def _train(world, tokenizer, batches, out, stage, *, hook: bool, spec=None, **hook_kw):
    model = load_model(world.model_dir)
    records = load_problems("world", world=world, max_samples=64)
    seen = []
    cb = CircuitSnapshotCallback(
        batches[:1],
        spec or SnapshotSpec(steps=2, top_k=30),
        step_offset=100,
        on_snapshot=lambda step, snap, path: seen.append((step, path)),
        **hook_kw,
    )
    trainer = build_trainer(
        stage, model, tokenizer, records, out, seed=3, callbacks=[cb] if hook else []
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses, seen, trainer


@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_hook_leaves_training_unchanged_and_snapshots_every_save(
    world, tokenizer, batches, tmp_path, method
):
    stage = STAGES[method]
    plain, _, _ = _train(world, tokenizer, batches, tmp_path / "plain", stage, hook=False)
    hooked, seen, trainer = _train(world, tokenizer, batches, tmp_path / "hooked", stage, hook=True)
    assert hooked == plain, "same seed, same losses with and without the hook"
    saves = list(range(stage.save_steps, stage.max_steps + 1, stage.save_steps))
    assert [s for s, _ in seen] == [100 + s for s in saves]
    for s in saves:
        snap = read_snapshot(tmp_path / "hooked" / f"checkpoint-{s}" / "circuit")
        assert snap.step == 100 + s and snap.heads
    assert trainer.model.training is True


def test_snapshots_already_written_are_not_redone(world, tokenizer, batches, tmp_path):
    stage = STAGES["sft"].model_copy(update={"max_steps": 2})
    _, seen, _ = _train(world, tokenizer, batches, tmp_path / "r", stage, hook=True)
    first = (tmp_path / "r" / "checkpoint-2" / "circuit" / "snapshot.json").stat().st_mtime_ns
    stale = tmp_path / "r" / "checkpoint-2" / ".circuit.tmp-deadbeef"
    stale.mkdir()  # what a process killed mid-snapshot leaves
    cb = CircuitSnapshotCallback(
        batches[:1], SnapshotSpec(steps=2, top_k=30), on_snapshot=lambda *a: seen.append(a)
    )

    class S:  # the Trainer's state at a save of step 2, replayed
        is_world_process_zero, global_step = True, 2

    class A:
        output_dir = str(tmp_path / "r")

    cb.on_save(A, S, None, model=None)
    assert len(seen) == 1, "not reported again"
    assert (
        tmp_path / "r" / "checkpoint-2" / "circuit" / "snapshot.json"
    ).stat().st_mtime_ns == first
    assert not stale.exists(), "half-written leftovers are cleared"


def test_process_mode_snapshots_from_the_saved_checkpoint(world, tokenizer, batches, tmp_path):
    stage = STAGES["sft"].model_copy(update={"max_steps": 2})
    _, seen, _ = _train(
        world,
        tokenizer,
        batches,
        tmp_path / "p",
        stage,
        hook=True,
        mode="process",
        pairs_path=world.pairs_path,
        spec=SnapshotSpec(
            steps=2, top_k=30, n_pairs=5, batch_size=2, tokens_per_pass=64, schedule="left"
        ),
    )
    assert [s for s, _ in seen] == [102]
    snap = read_snapshot(tmp_path / "p" / "checkpoint-2" / "circuit")
    assert snap.step == 102
    # every snapshot setting reaches the child process (it once ignored n_pairs and batch_size)
    assert snap.settings["n_pairs"] == 5 and snap.settings["schedule"] == "left"
    assert snap.settings["faithfulness_pairs"] <= 2  # batches of two pairs


def test_a_diverged_save_is_recorded_as_failed_and_training_goes_on(world, batches, tmp_path):
    import torch

    from sparks.circuits.snapshot import FailedSnapshot

    model = load_model(world.model_dir)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("inf")
    seen = []
    cb = CircuitSnapshotCallback(
        batches[:1], SnapshotSpec(steps=2, top_k=30), on_snapshot=lambda *a: seen.append(a)
    )

    class S:
        is_world_process_zero, global_step = True, 4

    class A:
        output_dir = str(tmp_path)

    cb.on_save(A, S, None, model=model)  # no exception: training would go on
    ((step, snap, path),) = seen
    assert isinstance(snap, FailedSnapshot) and step == 4 and "not finite" in snap.reason
    back = read_snapshot(path)
    assert isinstance(back, FailedSnapshot) and back.reason == snap.reason


def test_a_killed_snapshot_process_leaves_its_save_for_the_catch_up(
    world, tokenizer, batches, tmp_path, capsys
):
    """A snapshot child that dies (SIGKILL here) does not fail training: the hook says so in one
    line, reports nothing for that save and leaves no snapshot, so the pipeline's catch-up (and a
    rerun) builds exactly that one from its checkpoint."""
    import signal

    from transformers import TrainerCallback

    class KillChild(TrainerCallback):  # runs right after the hook has started the child
        def __init__(self, hook):
            self.hook = hook

        def on_save(self, args, state, control, **kwargs):
            self.hook._children[-1][2].send_signal(signal.SIGKILL)

    model = load_model(world.model_dir)
    records = load_problems("world", world=world, max_samples=32)
    seen = []
    hook = CircuitSnapshotCallback(
        batches[:1],
        SnapshotSpec(steps=2, top_k=30),
        on_snapshot=lambda *a: seen.append(a),
        mode="process",
        pairs_path=world.pairs_path,
    )
    stage = STAGES["sft"].model_copy(update={"max_steps": 2})
    out = tmp_path / "k"
    trainer = build_trainer(
        stage, model, tokenizer, records, out, seed=3, callbacks=[hook, KillChild(hook)]
    )
    trainer.train()  # does not raise
    assert seen == [] and not (out / "checkpoint-2" / "circuit").exists()
    err = capsys.readouterr().err
    assert (
        "the snapshot process of step 2 failed" in err and "snapshotted from the checkpoint" in err
    )

    # the catch-up the pipeline runs after training (and a rerun before it): exactly that save
    from sparks.track.hook import snapshot_missing
    from sparks.train.saves import checkpoints

    saves = [(int(c.name.split("-")[1]), c) for c in checkpoints(out)]
    assert snapshot_missing(saves, batches[:1], SnapshotSpec(steps=2, top_k=30)) == [2]
    assert read_snapshot(out / "checkpoint-2" / "circuit").step == 2
    assert not list((out / "checkpoint-2").glob(".circuit.tmp-*"))
    assert (
        snapshot_missing(saves, batches[:1], SnapshotSpec(steps=2, top_k=30)) == []
    )  # nothing twice
