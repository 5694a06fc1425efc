"""Head interventions: the o_proj edit equals scaling the head's output at run time."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from sparks.studies.interventions import (
    parse_heads,
    scale_heads_,
    scaled_heads,
    write_scaled_checkpoint,
)


@pytest.fixture
def model(world):
    return AutoModelForCausalLM.from_pretrained(str(world.model_dir), dtype=torch.float64).eval()


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.3])
def test_o_proj_edit_matches_runtime_head_scaling(world, model, batches, scale):
    heads = [(1, 2), (3, 0)]
    b = batches[0]
    with torch.no_grad():
        plain = model(input_ids=b.clean_ids, attention_mask=b.mask).logits
        with scaled_heads(model, heads, scale):
            hooked = model(input_ids=b.clean_ids, attention_mask=b.mask).logits
        assert not any(m._forward_pre_hooks for m in model.modules()), "hooks removed"
        edited = AutoModelForCausalLM.from_pretrained(
            str(world.model_dir), dtype=torch.float64
        ).eval()
        scale_heads_(edited, heads, scale)
        after = edited(input_ids=b.clean_ids, attention_mask=b.mask).logits
    torch.testing.assert_close(after, hooked, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(after, plain), "the intervention changes the output"


def test_written_checkpoint_is_edited_and_recorded(world, model, batches, tmp_path):
    out = write_scaled_checkpoint(world.model_dir, "L0H1,L2H3", 0.0, tmp_path / "ablated")
    edited = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float64).eval()
    b = batches[0]
    with torch.no_grad(), scaled_heads(model, [(0, 1), (2, 3)], 0.0):
        hooked = model(input_ids=b.clean_ids, attention_mask=b.mask).logits
    with torch.no_grad():
        torch.testing.assert_close(
            edited(input_ids=b.clean_ids, attention_mask=b.mask).logits,
            hooked,
            rtol=1e-5,
            atol=1e-5,
        )
    assert (out / "sparks_intervention.json").is_file() and (out / "tokenizer.json").is_file()
    with pytest.raises(FileExistsError):
        write_scaled_checkpoint(world.model_dir, "L0H1", 0.0, out)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("L1H2,L3H0", [(1, 2), (3, 0)]), (["L0H0"], [(0, 0)])],
)
def test_parse_heads(spec, expected):
    assert parse_heads(spec, n_layers=4, n_heads=4) == expected


@pytest.mark.parametrize(
    ("spec", "msg"),
    [("", "no heads given"), ("12.3", "bad head '12.3'"), ("L4H0", "outside the model")],
)
def test_bad_heads_are_refused(spec, msg):
    with pytest.raises(ValueError, match=msg):
        parse_heads(spec, n_layers=4, n_heads=4)
