"""Bad inputs, as a table: each gets one line naming what is wrong and what to do, a nonzero exit,
and leaves every earlier output alone (the session's finished run directory and its MLflow store
are hashed before and after each case). The Prefect-form cases (parameters as the UI sends them)
are in tests/stack/test_stack.py, beside the deployments they are sent to."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from sparks.cli import main


def _digest(*roots: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            h.update(str(p).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def bad(tmp_path_factory, trained_run, world, foreign_model) -> dict[str, str]:
    """Broken inputs of every kind, next to the session's finished run."""
    d = tmp_path_factory.mktemp("bad")
    run = Path(trained_run.cfg.output_dir)
    model = run / "stage0-sft" / "final"
    files = {"run": str(run), "model": str(model), "ckpt": str(run / "stage0-sft" / "checkpoint-2")}

    def write(name: str, text: str) -> str:
        (d / name).write_text(text)
        files[name] = str(d / name)
        return str(d / name)

    write("not-yaml.yaml", "stages: [ {method: sft\n")
    write("list.yaml", "- a\n- b\n")
    write("unknown-field.yaml", "stagez: []\n")
    write("neg-lr.yaml", "stages:\n  - {method: sft, learning_rate: -1}\n")
    write("ppo.yaml", "stages:\n  - {method: ppo}\n")
    write("save0.yaml", "stages:\n  - {method: sft, save_steps: 0}\n")
    write("steps0.yaml", "snapshot: {steps: 0}\n")
    write("stray-source.yaml", "evaluation: {benchmarks: [world], sources: {aime24: x.jsonl}}\n")
    write("file-mode.yaml", "snapshot: {pairs: {mode: file}}\n")
    write("contrast.yaml", "snapshot: {pairs: {mode: contrast, sources: [aime24]}}\n")
    write(
        "no-model.yaml",
        f"model: {{path: {d / 'no-such-model'}}}\nevaluation: {{enabled: false}}\n",
    )
    write("pairs-bad-json.jsonl", '{"id": "p0", "clean": "a"\n')
    write("pairs-empty.jsonl", "")
    write("bench-no-answer.jsonl", json.dumps({"id": 1, "problem": "1+1?"}) + "\n")
    write("bench-empty.jsonl", "")
    # pairs of the world's tokenizer, which the foreign model must refuse
    files["world-pairs"] = str(run / "pairs.jsonl")
    files["foreign"] = str(foreign_model)
    no_weights = d / "no-weights"
    no_weights.mkdir()
    shutil.copy(model / "config.json", no_weights / "config.json")
    files["no-weights"] = str(no_weights)
    no_template = d / "no-template"
    shutil.copytree(model, no_template)
    cfg = json.loads((no_template / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(cfg))
    for extra in no_template.glob("chat_template.*"):
        extra.unlink()
    files["no-template"] = str(no_template)
    gpt2 = d / "gpt2"
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64)).save_pretrained(gpt2)
    files["gpt2"] = str(gpt2)
    files["tasks"] = str(world.tasks_path("test"))
    files["d"] = str(d)
    return files


# (id, argv, what the one line must say); {name} is a path from the fixture
CASES = [
    # config files
    ("config-missing", "run {d}/nope.yaml --out {run}", "not found: pass the path of a YAML file"),
    ("config-not-yaml", "run {not-yaml.yaml} --out {run}", "not valid YAML at line"),
    ("config-not-mapping", "run {list.yaml} --out {run}", "expected a mapping of settings"),
    ("config-unknown-field", "run {unknown-field.yaml} --out {run}", "stagez: unknown setting"),
    ("config-negative-lr", "run {neg-lr.yaml} --out {run}", "stages.0.learning_rate"),
    ("config-unknown-method", "run {ppo.yaml} --out {run}", "stages.0.method"),
    ("config-save-steps-0", "run {save0.yaml} --out {run}", "stages.0.save_steps"),
    ("config-ig-steps-0", "run {steps0.yaml} --out {run}", "snapshot.steps"),
    ("config-stray-source", "run {stray-source.yaml} --out {run}", "which is not in benchmarks"),
    ("config-file-mode", "run {file-mode.yaml} --out {run}", "needs file: the path"),
    ("config-contrast", "run {contrast.yaml} --out {run}", "needs a reference model"),
    (
        "config-missing-model",
        "run {no-model.yaml} --out {run}",
        "does not exist: pass a checkpoint",
    ),
    ("demo-bad-config", "demo --config {neg-lr.yaml} --out {run}", "stages.0.learning_rate"),
    # pairs files
    ("pairs-missing", "snapshot {model} --pairs {d}/none.jsonl --out {d}/s1", "none.jsonl"),
    (
        "pairs-bad-json",
        "snapshot {model} --pairs {pairs-bad-json.jsonl} --out {d}/s2",
        "not valid JSON",
    ),
    (
        "pairs-empty",
        "snapshot {model} --pairs {pairs-empty.jsonl} --out {d}/s3",
        "pairs-empty.jsonl",
    ),
    ("pairs-other-tokenizer", "snapshot {foreign} --pairs {world-pairs} --out {d}/s4", "tokenizer"),
    (
        "pairs-contrast-no-reference",
        "pairs {model} --mode contrast --source world --out {d}/p.jsonl",
        "--reference",
    ),
    # benchmark files
    (
        "bench-missing-file",
        "eval {model} --benchmark aime24 --benchmark-file aime24={d}/no.jsonl --backend transformers",
        "no.jsonl",
    ),
    (
        "bench-no-answer",
        "eval {model} --benchmark aime24 --benchmark-file aime24={bench-no-answer.jsonl} --backend transformers",
        "answer",
    ),
    (
        "bench-empty",
        "eval {model} --benchmark aime24 --benchmark-file aime24={bench-empty.jsonl} --backend transformers",
        "bench-empty.jsonl",
    ),
    ("bench-unknown", "eval {model} --benchmark aime25 --backend transformers", "aime25"),
    (
        "bench-unselected-file",
        "eval {model} --benchmark world --benchmark-file aime24={tasks} --backend transformers",
        "aime24",
    ),
    # model directories
    ("model-missing", "snapshot {d}/no-model --pairs {world-pairs} --out {d}/s5", "does not exist"),
    (
        "model-no-weights",
        "eval {no-weights} --benchmark world --benchmark-file world={tasks}",
        "no weights",
    ),
    (
        "model-no-chat-template",
        "eval {no-template} --benchmark world --benchmark-file world={tasks} --backend transformers",
        "chat template",
    ),
    (
        "model-unsupported-arch",
        "snapshot {gpt2} --pairs {world-pairs} --out {d}/s6",
        "no circuit adapter for model type 'gpt2'",
    ),
    # command-line arguments
    (
        "snapshot-out-exists",
        "snapshot {ckpt} --pairs {world-pairs} --out {ckpt}/circuit",
        "already exists",
    ),
    (
        "snapshot-zero-steps",
        "snapshot {model} --pairs {world-pairs} --out {d}/s7 --steps 0",
        "steps",
    ),
    ("ablate-bad-heads", "ablate {model} --heads L99H0 --out {d}/a1", "L99H0"),
    ("ablate-malformed-heads", "ablate {model} --heads head3 --out {d}/a2", "head3"),
    ("ablate-out-exists", "ablate {model} --heads L0H0 --out {ckpt}", "already exists"),
    ("compare-missing-source", "compare {d}/no-run --out {d}/c1", "does not exist"),
    ("compare-checkpoint-no-base", "compare {ckpt} --out {d}/c2", "pass --base"),
    ("compare-no-out", "compare {run}", "--out"),
    ("mlflow-sync-nothing", "mlflow-sync {run}", "nothing waiting for upload"),
]


@pytest.mark.parametrize("case, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line_and_changes_nothing(case, argv, expected, bad, capsys):
    run = Path(bad["run"])
    store = Path(bad["run"]).parent / "mlflow.db"
    before = _digest(run, store)
    args = [_fill(a, bad) for a in argv.split()]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0, f"{case}: accepted"
    assert err.startswith("sparks: error: ") and len(err.splitlines()) == 1, (
        err
    )  # no progress bar or traceback before it: inputs are checked before anything is loaded
    assert expected in err, err
    assert _digest(run, store) == before, f"{case} changed the run directory or MLflow store"
    for leftover in ("s1", "s2", "s3", "s4", "s5", "s6", "s7", "a1", "a2", "c1", "c2", "p.jsonl"):
        assert not (Path(bad["d"]) / leftover).exists(), f"{case} left {leftover} behind"


def _fill(arg: str, files: dict[str, str]) -> str:
    for k, v in files.items():
        arg = arg.replace("{" + k + "}", v)
    return arg
