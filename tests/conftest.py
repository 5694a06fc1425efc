"""Shared fixtures: one small embedded world per test session, built the way users build theirs."""

from __future__ import annotations

import os
import random
from types import SimpleNamespace

import pytest

# No hub is reachable here: say so before anything imports datasets or huggingface_hub (both read
# these once, at import), so a load that must fail fails at once instead of after network retries
# (about 25 s each; subprocesses inherit it).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from sparks.world.build import World, WorldSpec, build_world  # noqa: E402

TEST_WORLD = WorldSpec(seed=0, n_train=400, n_test=60, n_pairs=24)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("world") / "w", TEST_WORLD)


@pytest.fixture(scope="session")
def tokenizer(world):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(world.model_dir))


@pytest.fixture(scope="session")
def batches(world, tokenizer):
    """Eight of the world's clean/corrupted pairs, in batches of four."""
    from sparks.circuits.batches import encode_pairs

    return encode_pairs(tokenizer, world.pairs()[:8], batch_size=4)


@pytest.fixture(autouse=True)
def seed():
    random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass


# A model that is not the world's: another family (Llama) with its own, differently trained
# tokenizer (no digit splitting, so numbers can merge into multi-digit tokens; a Llama-3-style
# chat template), random weights of a real architecture's config, shrunk for speed.
LLAMA3_TEMPLATE = (
    "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="session")
def foreign_model(world, tmp_path_factory):
    """Directory of a tiny random Llama with its own byte-level BPE tokenizer (vocab 900)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from sparks.models.shapes import SHAPES, random_model

    specials = [
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|pad|>",
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [t["problem"] + " " + t["solution"] for t in world.tasks("train")]
    tok.train_from_iterator(
        corpus * 2,
        trainer=trainers.BpeTrainer(
            vocab_size=900,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|pad|>",
        chat_template=LLAMA3_TEMPLATE,
        padding_side="left",
    )
    model = random_model(
        SHAPES["meta-llama/Llama-3.2-1B"],
        seed=5,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        vocab_size=len(fast),
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    out = tmp_path_factory.mktemp("foreign") / "llama"
    model.save_pretrained(str(out))
    fast.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real temporary Prefect server for every flow run of the session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def run_config(tmp_path, world, uri, name="t"):
    """A short SFT-then-GRPO run on the test world: saves at steps 2, 4 (SFT) and 5-8 (GRPO)."""
    from sparks.config import validate_config

    return validate_config(
        {
            "name": name,
            "seed": 1,
            "output_dir": str(tmp_path / name),
            "world": {
                k: v
                for k, v in world.spec().items()
                if k in ("seed", "n_train", "n_test", "n_pairs")
            },
            "stages": [
                {
                    "method": "sft",
                    "max_steps": 4,
                    "save_steps": 2,
                    "learning_rate": 3e-3,
                    "batch_size": 8,
                },
                {
                    "method": "grpo",
                    "max_steps": 4,
                    "save_steps": 1,
                    "learning_rate": 3e-4,
                    "batch_size": 8,
                    "num_generations": 4,
                    "max_completion_length": 16,
                },
            ],
            "snapshot": {"steps": 2, "top_k": 40, "n_pairs": 8, "batch_size": 8},
            "evaluation": {
                "benchmarks": ["world"],
                "every": 2,
                "n": 2,
                "max_tokens": 24,
                "limit": 6,
                "backend": "transformers",
            },
            "tracking": {"mlflow_uri": uri, "experiment": "flow-test"},
        }
    )


@pytest.fixture(scope="session")
def trained_run(prefect_server, tmp_path_factory, world):
    """One real `post-train` run (SFT then GRPO) that the flow, analysis and report tests share."""
    from mlflow.tracking import MlflowClient

    from sparks.flows.train import post_train

    tmp = tmp_path_factory.mktemp("flow")
    uri = f"sqlite:///{tmp}/mlflow.db"
    cfg = run_config(tmp, world, uri)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # world cache and stores stay inside the test's directory
        mp.setattr("sparks.run.pipeline.world_for", lambda s, cache_root=None: world, raising=True)
        summary = post_train(cfg)
    return SimpleNamespace(cfg=cfg, summary=summary, client=MlflowClient(uri), uri=uri, tmp=tmp)


# The fast lane (`make test-fast`, `pytest -m "not slow"`): what needs no server, launch, engine or
# trained run. A test is slow when it is marked so, uses a fixture below, or lives in a module
# below (each measured here above ~5 s: real servers, multi-process launches, kills and reruns).
SLOW_FIXTURES = {"prefect_server", "trained_run", "world_cache", "stack", "trained", "inline"}
SLOW_MODULES = {
    "tests/reliability/",
    "tests/flows/",
    "tests/stack/",
    "tests/train/test_multiprocess.py",
    "tests/train/test_distill.py",
    "tests/track/test_sharded.py",
    "tests/test_gpu_check.py",
    "tests/test_docker.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.split("::")[0]
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(
            path.startswith(m) for m in SLOW_MODULES
        ):
            item.add_marker(pytest.mark.slow)
