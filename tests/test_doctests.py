"""The examples in docstrings of pure functions run as tests."""

from __future__ import annotations

import doctest

import pytest

import sparks.evaluate.metrics
import sparks.flows.engine
import sparks.problems.grading
import sparks.studies.equations
import sparks.studies.failures
import sparks.studies.study
import sparks.train.rewards
import sparks.train.started

MODULES = [
    sparks.problems.grading,
    sparks.train.rewards,
    sparks.train.started,
    sparks.studies.equations,
    sparks.studies.failures,
    sparks.flows.engine,
    sparks.evaluate.metrics,
    sparks.studies.study,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
