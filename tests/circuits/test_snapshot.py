"""CircuitSnapshot: build, write atomically, read back losslessly; the `sparks snapshot` CLI."""

from __future__ import annotations

import json

import pytest
import torch

from sparks.circuits.snapshot import SnapshotError, build_snapshot, read_snapshot, write_snapshot
from sparks.circuits.spec import SnapshotSpec
from sparks.config import DEFAULT_SCHEDULE
from tests.cli import sparks as _sparks


@pytest.fixture(scope="module")
def snap(world, batches):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(world.model_dir)).train()
    s = build_snapshot(model, batches, SnapshotSpec(steps=3, top_k=40), step=7, n_boot=20)
    assert model.training, "the snapshot restores train mode"
    return s


def test_snapshot_holds_circuit_stability_and_faithfulness(snap):
    g = snap.graph
    assert snap.step == 7 and snap.settings == {
        "steps": 3,
        "metric": "logit_diff",
        "top_k": 40,
        "n_pairs": 8,
        "n_boot": 20,
        "faithfulness_pairs": 4,
        "schedule": DEFAULT_SCHEDULE,
    }
    assert 0 < int(snap.circuit.edges.sum()) <= 40
    assert snap.heads and all(h.startswith("L") and "H" in h for h in snap.heads)
    assert snap.head_stability.shape == (g.n_layers, g.n_heads)
    assert ((snap.head_stability >= 0) & (snap.head_stability <= 1)).all()
    assert sorted(snap.faithfulness) == [20, 40, 80]
    assert len(snap.fingerprint) == 24


def test_completeness_error_is_the_input_edges_gap_and_shrinks_with_steps(snap, world, batches):
    from transformers import AutoModelForCausalLM

    change = snap.m_corrupt - snap.m_clean
    assert snap.completeness_error == pytest.approx(
        abs(float(snap.edge_scores[0].sum()) - change) / abs(change), rel=1e-4
    )
    model = AutoModelForCausalLM.from_pretrained(str(world.model_dir), dtype=torch.float64)
    errors = [
        build_snapshot(model, batches, SnapshotSpec(steps=m, top_k=40), n_boot=2).completeness_error
        for m in (1, 30)
    ]
    assert errors[1] < errors[0] and errors[1] < 0.02, errors


def test_write_then_read_is_lossless(snap, tmp_path):
    out = write_snapshot(snap, tmp_path / "circuit")
    back = read_snapshot(out)
    assert torch.equal(back.edge_scores, snap.edge_scores)
    assert torch.equal(back.node_scores, snap.node_scores)
    assert torch.equal(back.circuit.edges, snap.circuit.edges)
    assert torch.equal(back.circuit.nodes, snap.circuit.nodes)
    assert torch.equal(back.head_stability, snap.head_stability)
    assert (back.heads, back.faithfulness, back.step, back.fingerprint, back.settings) == (
        snap.heads,
        snap.faithfulness,
        snap.step,
        snap.fingerprint,
        snap.settings,
    )
    meta = json.loads((out / "snapshot.json").read_text())
    assert meta["edges_saved"] == meta["edges_total"] == int(snap.graph.valid.sum())


def test_top_n_edges_keeps_the_circuit(snap, tmp_path):
    back = read_snapshot(write_snapshot(snap, tmp_path / "small", max_edges=10))
    assert int((back.edge_scores != 0).sum()) <= 10 + int(snap.circuit.edges.sum())
    assert torch.equal(back.circuit.edges, snap.circuit.edges)


def test_a_failed_write_leaves_nothing_and_existing_snapshots_are_kept(snap, tmp_path, monkeypatch):
    import pandas as pd

    write_snapshot(snap, tmp_path / "kept")
    with pytest.raises(FileExistsError):
        write_snapshot(snap, tmp_path / "kept")

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(snap, tmp_path / "broken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert read_snapshot(tmp_path / "kept").heads == snap.heads


def test_reading_a_non_snapshot_says_so(tmp_path):
    with pytest.raises(SnapshotError, match="not a circuit snapshot"):
        read_snapshot(tmp_path)


def test_cli_writes_a_snapshot(world, tmp_path):
    done = _sparks(
        "snapshot",
        str(world.model_dir),
        "--pairs",
        str(world.pairs_path),
        "--out",
        str(tmp_path / "s"),
        "--steps",
        "2",
        "--top-k",
        "30",
        "--n-pairs",
        "8",
        "--batch-size",
        "4",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "heads in the top-30 circuit" in done.stdout and "attribution" in done.stderr
    )  # progress bar
    assert read_snapshot(tmp_path / "s").settings["top_k"] == 30


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_model", "does not exist: pass a checkpoint directory"),
        ("no_weights", "has a config but no weights"),
        ("unequal", "EAP-IG needs equal lengths"),
        ("empty", "is empty: it needs at least one"),
        ("bad_metric", "argument --metric: 'acc' is not one of 'auto'"),
        ("bad_spec", "--spec: not JSON"),
        ("spec_out_of_range", "--spec: top_k: Input should be greater than or equal to 1"),
    ],
)
def test_cli_bad_input_fails_in_one_line_and_writes_nothing(world, tmp_path, case, expected):
    import shutil

    model, pairs = str(world.model_dir), tmp_path / "pairs.jsonl"
    pairs.write_text(world.pairs_path.read_text())
    extra = []
    if case == "missing_model":
        model = str(tmp_path / "nowhere")
    elif case == "no_weights":
        shutil.copytree(
            world.model_dir, tmp_path / "m", ignore=shutil.ignore_patterns("*.safetensors")
        )
        model = str(tmp_path / "m")
    elif case == "unequal":
        rec = json.loads(world.pairs_path.read_text().splitlines()[0])
        rec["corrupted"] += " extra"
        pairs.write_text(json.dumps(rec) + "\n")
    elif case == "empty":
        pairs.write_text("")
    elif case == "bad_spec":  # the training hook's process mode hands its child the spec as JSON
        extra = ["--spec", "{top_k: 30"]
    elif case == "spec_out_of_range":
        extra = ["--spec", json.dumps({"top_k": 0})]
    else:
        extra = ["--metric", "acc"]
    done = _sparks(
        "snapshot",
        model,
        "--pairs",
        str(pairs),
        "--out",
        str(tmp_path / "out"),
        *extra,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert expected in lines[-1]
    if case != "bad_metric":  # argparse prints its usage block before its own error line
        assert len(lines) == 1 and lines[0].startswith("sparks: error: ")
    assert not (tmp_path / "out").exists()


def test_a_top_k_above_the_graphs_edges_is_the_whole_graph(world, tmp_path, capsys):
    """`sparks snapshot --top-k` above the model's edge count once wrote the snapshot, then exited
    1 with a TypeError: the circuit is the whole graph, the summary says so, exit 0."""
    from sparks.cli import main

    out = tmp_path / "whole"
    argv = ["snapshot", str(world.model_dir), "--pairs", str(world.pairs_path), "--out", str(out)]
    assert main(argv + ["--top-k", "100000", "--steps", "1", "--n-pairs", "2"]) == 0
    snap = read_snapshot(out)
    line = capsys.readouterr().out
    assert f"the whole graph (--top-k 100000 >= its {snap.n_edges} edges)" in line
    assert "faithfulness nan" not in line and snap.circuit_faithfulness == snap.circuit_faithfulness


def test_snapshot_json_and_the_printed_line_say_what_was_measured_and_how_well(
    world, tmp_path, capsys
):
    """steps auto: the IG steps chosen and the completeness error reached are in snapshot.json
    and the printed line, with the pair set's name and its pairs file's hash."""
    import hashlib
    import json

    from sparks.cli import main

    out = tmp_path / "auto"
    argv = ["snapshot", str(world.model_dir), "--pairs", str(world.pairs_path), "--out", str(out)]
    assert main(argv + ["--steps", "auto", "--n-pairs", "4", "--pair-set", "chains"]) == 0
    meta = json.loads((out / "snapshot.json").read_text())
    digest = hashlib.sha256(world.pairs_path.read_bytes()).hexdigest()
    assert meta["settings"]["pairs"] == {
        "set": "chains", "file": str(world.pairs_path), "sha256": digest, "n_pairs": 4
    }  # fmt: skip
    snap = read_snapshot(out)
    assert meta["completeness_error"] == pytest.approx(snap.completeness_error)
    assert meta["settings"]["steps_auto"] and meta["settings"]["steps"] >= 1
    by_pairs = meta["settings"]["steps_by_pairs"]  # the count each pair ended at
    assert sum(by_pairs.values()) == 4 and max(map(int, by_pairs)) == meta["settings"]["steps"]
    line = capsys.readouterr().out
    steps = f"{meta['settings']['steps']} IG steps"
    if len(by_pairs) > 1:
        lo = min(map(int, by_pairs))
        at = ", ".join(f"{by_pairs[k]} at {k}" for k in sorted(by_pairs, key=int))
        steps = f"{lo}-{meta['settings']['steps']} IG steps (pairs: {at})"
    assert snap.steps_text == steps
    assert f"{steps}, completeness error " in line
    assert f"{meta['completeness_error']:.1%}" in line
    assert f"pair set chains, 4 pairs from {world.pairs_path} (sha256 {digest[:12]})" in line


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--top-k", "0"], "argument --top-k: must be at least 1 (as SnapshotSpec.top_k)"),
        (["--top-k", "-3"], "argument --top-k: must be at least 1"),
        (["--max-steps", "0"], "argument --max-steps: must be at least 1"),
        (["--steps-tolerance", "0"], "argument --steps-tolerance: must be above 0"),
    ],
)
def test_bad_snapshot_settings_are_refused_before_any_work(
    world, tmp_path, capsys, extra, expected
):
    from sparks.cli import main

    out = tmp_path / "bad"
    argv = ["snapshot", str(world.model_dir), "--pairs", str(world.pairs_path), "--out", str(out)]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0, err
    assert not out.exists()


def test_a_cap_below_the_rules_first_count_is_the_count_and_flagged(world, tmp_path):
    from sparks.cli import main

    out = tmp_path / "one"
    argv = ["snapshot", str(world.model_dir), "--pairs", str(world.pairs_path), "--out", str(out)]
    assert main(argv + ["--steps", "auto", "--max-steps", "1", "--n-pairs", "2"]) == 0
    s = read_snapshot(out).settings
    assert s["steps"] == 1 and s["steps_capped"] and s["steps_tried"] == [1]
