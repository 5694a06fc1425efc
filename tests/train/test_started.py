"""What a launch started against what was asked: each quiet difference gets its line."""

from __future__ import annotations

import pytest

from sparks.train.started import differences, started

CPU = {"device": "cpu", "sharding": "none", "mixed_precision": "no"}


@pytest.mark.parametrize(
    ("actual", "asked", "env", "expected"),
    [
        # accelerate launch --cpu --num_processes 2: MASTER_ADDR set, one process (its launcher)
        ({"processes": 1}, 1, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"},
         "accelerate launch --cpu started ONE process although several were asked"),
        # multi_gpu.yaml on a CPU without --num_processes: eight ranks on two cores
        ({"processes": 8}, 2, {"RANK": "0"}, "8 ranks on 2 CPU cores"),
        ({"processes": 8}, 2, {"RANK": "0"}, "distributed.processes is 2 but 8 process(es)"),
        ({"processes": 2, "sharding": "none (FSDP ignored on a CPU)"}, 2, {"RANK": "0"},
         "FSDP is ignored on a CPU"),
        ({"processes": 2, "mixed_precision": "bf16"}, 2, {"RANK": "0"},
         "bf16 mixed precision on a CPU without bf16 instructions"),
    ],
)  # fmt: skip
def test_each_quiet_difference_is_said(actual, asked, env, expected):
    lines = differences(CPU | actual, asked=asked, cores=2, env=env, bf16_cpu=False)
    assert any(expected in line for line in lines), lines


def test_a_launch_as_asked_says_nothing():
    assert differences(CPU | {"processes": 2}, asked=2, cores=2, env={"RANK": "0"},
                       bf16_cpu=False) == []  # fmt: skip
    assert differences(CPU | {"processes": 1}, asked=1, cores=2, env={}, bf16_cpu=False) == []


def test_one_process_records_what_it_runs():
    run = started(1, env={})
    assert run["processes"] == 1 and run["backend"] == "none" and run["sharding"] == "none"
    assert run["device"] in ("cpu", "cuda") and run["mixed_precision"] == "no"
