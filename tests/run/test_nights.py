"""Nights as runs (sparks/run/nights.py), without a server: which night comes before, and the lines
that refuse a night (a bad date; the previous night still being written, with a real process).
The nightly deployment triggered twice is in tests/stack/test_stack.py."""

from __future__ import annotations

import pytest

from sparks.config import RunConfig
from sparks.run.nights import plan_night
from tests.train.test_writers import _writer


def test_a_night_is_its_own_run_after_the_newest_earlier_night(tmp_path):
    for night in ("2026-12-01", "2026-12-02", "2026-12-09"):
        (tmp_path / night).mkdir()
        (tmp_path / night / "run.json").write_text("{}")
    (tmp_path / "2026-12-03").mkdir()  # no run in it: not a night
    n = plan_night(RunConfig(name="demo"), tmp_path, "2026-12-04")
    assert n.previous == tmp_path / "2026-12-02"
    assert (
        n.config.output_dir == str(tmp_path / "2026-12-04") and n.config.name == "demo-2026-12-04"
    )
    with pytest.raises(ValueError, match="give a date as YYYY-MM-DD"):
        plan_night(RunConfig(), tmp_path, "tonight")


def test_a_night_does_not_start_beside_the_previous_one_still_running(tmp_path):
    previous = tmp_path / "2026-12-03"
    previous.mkdir()
    (previous / "run.json").write_text("{}")
    holder = _writer(previous)
    try:
        with pytest.raises(ValueError, match=f"2026-12-03 is still running .*pid {holder.pid}"):
            plan_night(RunConfig(), tmp_path, "2026-12-04")
        assert not (tmp_path / "2026-12-04").exists()
    finally:
        holder.kill()
        holder.wait()
