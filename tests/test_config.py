"""Run configuration: the demo config loads; bad configs fail naming the field and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparks.config import ConfigError, RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_demo_config_loads_with_sft_then_grpo():
    cfg = load_config(ROOT / "configs/demo.yaml")
    assert isinstance(cfg, RunConfig)
    assert [s.method for s in cfg.stages] == ["sft", "grpo"]
    assert all(s.max_steps // s.save_steps >= 6 for s in cfg.stages), "at least 6 saves per phase"
    assert cfg.model.path == "world" and cfg.snapshot.steps == "auto"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "stages:\n  - {method: sft, learning_rate: -1}\n",
            r"stages\.0\.learning_rate: Input should be greater than 0 \(got -1\)",
        ),
        (
            "snapshot: {metric: entropy}\n",
            r"snapshot\.metric: Input should be 'auto', 'logit_diff', 'logprob', 'kl' or 'kl_prefix'",
        ),
        ("trainig: {}\n", r"trainig: unknown setting: check its spelling"),
        (
            "stages:\n  - {method: grpo, batch_size: 6, num_generations: 4}\n",
            r"stages\.0: batch_size x grad_accum \(6\) must be divisible by num_generations \(4\)",
        ),
        ("stages:\n  - {method: distill}\n", r"stages\.0\.teacher: a distill stage needs it"),
        (
            "stages:\n  - {method: sft, num_generations: 8}\n",
            r"stages\.0\.num_generations: not a setting of a sft stage: remove it",
        ),
        (
            "stages:\n  - {method: grpo, teacher: x}\n",
            r"stages\.0\.teacher: not a setting of a grpo",
        ),
        (
            "evaluation: {concurrent: true, backend: transformers}\n",
            r"evaluation: concurrent evaluation needs backend 'vllm'",
        ),
        ("stages: []\n", r"stages: List should have at least 1 item"),
        ("model: [1, 2\n", r"not valid YAML at line 2"),
        ("- just\n- a list\n", r"expected a mapping of settings"),
    ],
)
def test_malformed_config_is_rejected_naming_the_field(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as e:
        load_config(path)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value), "one line"


def test_missing_config_file_says_what_to_pass(tmp_path):
    with pytest.raises(ConfigError, match="not found: pass the path of a YAML file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"evaluation": {"benchmarks": ["amc23"], "sources": {"amc24": "a.jsonl"}}},
            "evaluation: sources names 'amc24', which is not in benchmarks (amc23)",
        ),
        (
            {"model": {"path": "Qwen/Qwen2.5-Math-1.5B"}, "snapshot": {"metric": "logit_diff"}},
            "metric logit_diff compares answer tokens, which numbers pairs (snapshot.pairs) do not have",
        ),
        (
            {"snapshot": {"pairs": {"mode": "contrast"}}},
            "contrast needs a reference model",
        ),
        ({"snapshot": {"pairs": {"mode": "file"}}}, "mode 'file' needs file"),
    ],
)
def test_pairs_and_sources_that_cannot_fit_are_refused(raw, expected):
    from sparks.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match=re.escape(expected)):
        validate_config(raw)


def test_a_pairs_path_is_short_for_file_mode():
    from sparks.config import validate_config

    cfg = validate_config({"snapshot": {"pairs": "p.jsonl"}})
    assert cfg.snapshot.pairs.mode == "file" and cfg.snapshot.pairs.file == "p.jsonl"


def test_a_key_written_twice_is_refused_with_its_line(tmp_path):
    """Two pair sets of one name: YAML keeps the last silently; sparks refuses it."""
    cfg = tmp_path / "twice.yaml"
    cfg.write_text(
        "snapshot:\n  pairs:\n    easy: {mode: numbers}\n    easy: {mode: numbers, levels: [3]}\n"
    )
    with pytest.raises(
        ConfigError, match=r"twice.yaml: not valid YAML at line 4: 'easy' is given twice"
    ):
        load_config(cfg)
