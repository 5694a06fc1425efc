"""One live writer per run directory, with real processes: a second run is refused in one line
naming the holder, a dead holder's lock is taken over, a launch's own ranks share it, and
`sparks stop` ends the holder and ranks a killed launcher left running in sessions of their own.
(The same with a real 2-rank launch is in tests/reliability/test_launch_kills.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sparks.cli import main
from sparks.train.writers import RunBusyError, hold, live_writers, release

ROOT = Path(__file__).resolve().parents[2]

# a writer of OUT that starts RANKS more writers of it (its launch: same token, own sessions)
WRITER = """
import os, subprocess, sys, time
from sparks.train.writers import TOKEN, hold, token
out, role, ranks = sys.argv[1], sys.argv[2], int(sys.argv[3])
hold(out, role=role)
for r in range(ranks):
    subprocess.Popen([sys.executable, "-c", __CODE__, out, f"rank {r + 1} of {ranks}", "0"],
                     env=os.environ | {TOKEN: token()}, start_new_session=True)
print("holding", flush=True)
time.sleep(600)
"""


def _writer(out: Path, role: str = "run", ranks: int = 0) -> subprocess.Popen:
    code = WRITER.replace("__CODE__", repr(WRITER))
    env = {k: v for k, v in os.environ.items() if k != "SPARKS_RUN_TOKEN"}
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(out), role, str(ranks)],
        stdout=subprocess.PIPE,
        text=True,
        env=env | {"PYTHONPATH": str(ROOT)},
    )
    assert p.stdout.readline().strip() == "holding"
    deadline = time.monotonic() + 30
    while len(live_writers(out)) < 1 + ranks:  # the ranks register in their own time
        assert time.monotonic() < deadline, live_writers(out)
        time.sleep(0.1)
    return p


def test_a_second_run_is_refused_in_one_line_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _writer(out)
    try:
        with pytest.raises(RunBusyError, match=f"pid {holder.pid} on .* \\(run, since"):
            hold(out, role="run")
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"output_dir: {out}\n")
        started = time.perf_counter()
        assert main(["train", str(cfg)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is being written by pid {holder.pid}" in err[0], err
        assert f"sparks stop {out}" in err[0]
        print(f"refused in {time.perf_counter() - started:.1f} s")
        assert sorted(p.name for p in out.iterdir()) == [".writers"]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holders_lock_is_taken_over_and_said(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _writer(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    dead = hold(out, role="run")
    try:
        assert [w.pid for w in dead] == [holder.pid]
        assert "took over from a writer that is no longer running" in capsys.readouterr().err
        assert [w.pid for w in live_writers(out)] == [os.getpid()]
    finally:
        release(out)
    assert not list((out / ".writers").glob("*.json"))  # released: no writer left


def test_stop_ends_ranks_a_killed_launcher_left_running(tmp_path, capsys):
    """The issue's case: the launcher's process group is killed, its ranks (own sessions) go on;
    a rerun is refused naming them, `sparks stop` ends them, then the rerun may start."""
    out = tmp_path / "run"
    launcher = _writer(out, role="run", ranks=2)
    ranks = [w.pid for w in live_writers(out) if w.pid != launcher.pid]
    assert len(ranks) == 2
    launcher.kill()  # SIGKILL, as a killed launch: its ranks run in sessions of their own
    launcher.wait()
    assert all(psutil.pid_exists(p) for p in ranks)  # orphans, still writing
    with pytest.raises(RunBusyError, match="rank . of 2"):
        hold(out, role="run")
    assert main(["stop", str(out), "--grace", "5"]) == 0
    said = capsys.readouterr().out
    assert "stopped 2 process(es)" in said and all(str(p) in said for p in ranks), said
    for p in ranks:
        assert not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
    assert sorted(w.pid for w in hold(out, role="run")) == sorted(ranks)  # their files, taken over
    release(out)
    assert main(["stop", str(out)]) == 0
    assert "nothing is writing" in capsys.readouterr().out
