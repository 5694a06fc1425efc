"""Float64 copies of the embedded model (Qwen2) and of same-shaped tiny Llama, Qwen3, Mistral."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from sparks.world.model import TinyModelSpec, build_model


@pytest.fixture(scope="session")
def qwen64(world):
    return AutoModelForCausalLM.from_pretrained(str(world.model_dir), dtype=torch.float64).eval()


@pytest.fixture(scope="session")
def llama64(tokenizer):
    return build_model(TinyModelSpec(family="llama"), tokenizer, seed=1).to(torch.float64).eval()


@pytest.fixture(scope="session")
def qwen3_64(tokenizer):
    return build_model(TinyModelSpec(family="qwen3"), tokenizer, seed=2).to(torch.float64).eval()


@pytest.fixture(scope="session")
def mistral64(tokenizer):
    return build_model(TinyModelSpec(family="mistral"), tokenizer, seed=3).to(torch.float64).eval()
