"""The examples in docstrings of pure functions run as tests."""

from __future__ import annotations

import doctest

import pytest

import sparks.demo
import sparks.evaluate.equations
import sparks.evaluate.failures
import sparks.evaluate.metrics
import sparks.evaluate.study
import sparks.grading
import sparks.train.rewards
import sparks.train.started

MODULES = [
    sparks.grading,
    sparks.train.rewards,
    sparks.train.started,
    sparks.evaluate.equations,
    sparks.evaluate.failures,
    sparks.demo,
    sparks.evaluate.metrics,
    sparks.evaluate.study,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
