"""Float64 random networks of the embedded model's shape: Qwen2, and tiny Llama, Qwen3, Mistral."""

from __future__ import annotations

import pytest
import torch

from sparks.world.model import TinyModelSpec, build_model


@pytest.fixture(scope="session")
def qwen64(tokenizer):
    # A random Qwen2 of the world model's shape, like its siblings below: the exactness tests
    # (completeness at 50 steps, ranking at 5) are calibrated on a smooth network. On the world's
    # pretrained base the same counts leave a 2.8 % completeness gap and a ranking rho of 0.32
    # (measured 2026-12-04): the snapshot's `steps: auto` is what chooses counts for a trained one.
    return build_model(TinyModelSpec(), tokenizer, seed=0).to(torch.float64).eval()


@pytest.fixture(scope="session")
def llama64(tokenizer):
    return build_model(TinyModelSpec(family="llama"), tokenizer, seed=1).to(torch.float64).eval()


@pytest.fixture(scope="session")
def qwen3_64(tokenizer):
    return build_model(TinyModelSpec(family="qwen3"), tokenizer, seed=2).to(torch.float64).eval()


@pytest.fixture(scope="session")
def mistral64(tokenizer):
    return build_model(TinyModelSpec(family="mistral"), tokenizer, seed=3).to(torch.float64).eval()
