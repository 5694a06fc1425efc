"""Shared fixtures: one small embedded world per test session, built the way users build theirs."""

from __future__ import annotations

import random

import pytest

from sparks.world.build import World, WorldSpec, build_world

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
    from sparks.circuits.pairs import encode_pairs

    return encode_pairs(tokenizer, world.pairs()[:8], batch_size=4)


@pytest.fixture(autouse=True)
def seed():
    random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass
