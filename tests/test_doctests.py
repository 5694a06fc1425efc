"""The examples in docstrings of pure functions run as tests."""

from __future__ import annotations

import doctest

import pytest

import sparks.grading
import sparks.train.rewards


@pytest.mark.parametrize("module", [sparks.grading, sparks.train.rewards])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
