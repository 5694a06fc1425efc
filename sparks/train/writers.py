"""One live writer per run directory, and a way to stop it.

Every process that writes a run directory (the run itself, each rank of its launches, an
`analyze` / `evaluate-checkpoints` flow) holds a file in `OUTPUT_DIR/.writers/`: its pid, host,
role, start time and command, under an flock the kernel releases when the process dies, however
it dies. A lock is therefore never stale while its holder lives and never blocks once it is dead:

1. `hold(out, role=...)` (under a short gate lock): every other file whose flock can be taken is
   a dead writer's and is removed (said in one line); a live one of another run refuses this one
   with `RunBusyError`, naming the holder and how to stop it. Processes of one launch share a
   token (`SPARKS_RUN_TOKEN`, inherited by launched ranks; the elastic agent's pid for ranks
   launched by hand), so a run's own ranks never refuse each other.
2. `live_writers(out)`: who holds the directory now (for the dry run and `sparks stop`).
3. `stop(out)`: SIGTERM to every live writer on this host and every process under it (the
   launcher, torch's elastic agent, ranks that run in sessions of their own), then SIGKILL after
   a grace period.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sparks.errors import UserError

WRITERS = ".writers"
TOKEN = "SPARKS_RUN_TOKEN"
_HELD: dict[str, tuple[Path, IO[str], bool]] = {}  # run dir -> (our file, its handle, made it)


class RunBusyError(UserError):
    """A run directory another live process is writing."""


@dataclass(frozen=True)
class Writer:
    """A live process writing a run directory."""

    pid: int
    host: str
    role: str
    started: float
    command: str
    token: str

    def line(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host} ({self.role}, since {when})"


_TOKEN: list[str] = []


def token() -> str:
    """What the processes of one run share: made by the first, handed by `launch_stage` to the
    ranks it starts (not to every subprocess: another run started from here is another run)."""
    if not _TOKEN:
        if TOKEN in os.environ:
            _TOKEN.append(os.environ[TOKEN])
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:  # ranks launched by hand: one agent
            _TOKEN.append(f"agent-{socket.gethostname()}-{os.getppid()}")
        else:
            _TOKEN.append(uuid.uuid4().hex)
    return _TOKEN[0]


def hold(out: Path, *, role: str) -> list[Writer]:
    """Register this process as a writer of `out` until it exits (or `release`); returns the dead
    writers whose files it removed. Raises RunBusyError if another run's process lives there."""
    out = Path(out).resolve()
    if str(out) in _HELD:
        return []
    made = not out.exists()  # a run refused before it writes leaves no directory behind
    d = out / WRITERS
    d.mkdir(parents=True, exist_ok=True)
    with _gate(d):
        dead, live = _scan(d)
        mine = token()
        others = [w for w in live if w.token != mine and w.pid != os.getpid()]
        if others:
            raise RunBusyError(busy_line(out, others))
        me = Writer(os.getpid(), socket.gethostname(), role, time.time(), _command(), mine)
        path = d / f"{me.host}-{me.pid}.json"
        f = open(path, "w")  # noqa: SIM115  (kept open: the flock lives as long as the process)
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(json.dumps(me.__dict__))
        f.flush()
        _HELD[str(out)] = (path, f, made)
    for w in dead:
        print(
            f"[sparks] {out}: took over from a writer that is no longer running ({w.line()})",
            file=sys.stderr,
        )
    return dead


def release(out: Path) -> None:
    """This process stops writing `out` (its file is removed; the directory is left if others
    remain)."""
    held = _HELD.pop(str(Path(out).resolve()), None)
    if held is None:
        return
    path, f, made = held
    path.unlink(missing_ok=True)
    f.close()
    if (
        made
        and not list(path.parent.glob("*.json"))
        and set(os.listdir(path.parent.parent)) == {WRITERS}
    ):  # a run that wrote nothing (refused) leaves no directory; .writers/ stays otherwise
        (path.parent / ".gate").unlink(missing_ok=True)
        for d in (path.parent, path.parent.parent):
            try:
                d.rmdir()
            except OSError:
                break


@contextmanager
def writing(paths: Sequence[str | Path], *, role: str) -> Iterator[None]:
    """Hold, for the time of the block, every run directory that `paths` (runs, or checkpoints
    inside runs) belong to: an analysis of a live run is refused, and a run waits for none."""
    held = []
    try:
        for run in runs_of(paths):
            if str(run) not in _HELD:
                hold(run, role=role)
                held.append(run)
        yield
    finally:
        for run in held:
            release(run)


def runs_of(paths: Sequence[str | Path]) -> list[Path]:
    """The run directories that `paths` (runs, or their checkpoints) belong to."""
    from sparks.train.saves import is_run_dir

    runs: list[Path] = []
    for p in map(Path, paths):
        run = next((d for d in [p, *p.parents][:3] if is_run_dir(d)), None)
        if run is not None and run.resolve() not in runs:
            runs.append(run.resolve())
    return runs


def busy(paths: list[str | Path]) -> str:
    """The line refusing work on `paths` while another run writes them ('' when none does)."""
    for run in runs_of(paths):
        if others := other_writers(run):
            return busy_line(run, others)
    return ""


def other_writers(out: Path) -> list[Writer]:
    """The live writers of `out` that are not this run's processes."""
    return [w for w in live_writers(out) if w.token != token()]


def live_writers(out: Path) -> list[Writer]:
    """The processes writing `out` now (another process's view; this one's own included)."""
    d = Path(out) / WRITERS
    if not d.is_dir():
        return []
    return _scan(d, remove=False)[1]


def busy_line(out: Path, writers: list[Writer]) -> str:
    """The one line that refuses a second writer of `out`."""
    first = writers[0]
    more = f" and {len(writers) - 1} more process(es)" if len(writers) > 1 else ""
    return (
        f"{out} is being written by {first.line()}{more}: wait for it to end, or stop it with  "
        f"sparks stop {out}"
    )


def stop(out: Path, *, grace: float = 15.0) -> list[str]:
    """End every live writer of `out` on this host and every process under it: SIGTERM, then
    SIGKILL after `grace` seconds. Returns a line per process ended."""
    import psutil

    host = socket.gethostname()
    writers = [w for w in live_writers(out) if w.pid != os.getpid()]
    elsewhere = [w for w in writers if w.host != host]
    if elsewhere:
        raise RunBusyError(
            f"{out} is also written from other hosts ({'; '.join(w.line() for w in elsewhere)}):"
            " run sparks stop there"
        )
    procs: dict[int, tuple[psutil.Process, str]] = {}
    for w in writers:
        try:
            root = psutil.Process(w.pid)
        except psutil.NoSuchProcess:
            continue
        procs[root.pid] = (root, w.role)
        for child in root.children(recursive=True):
            procs.setdefault(child.pid, (child, f"under pid {w.pid}"))
    for p, _ in procs.values():
        _signal(p, signal.SIGTERM)
    _, alive = psutil.wait_procs([p for p, _ in procs.values()], timeout=grace)
    for p in alive:
        _signal(p, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=10)
    return [
        f"pid {pid} ({role}){' killed' if p in alive else ''}"
        for pid, (p, role) in sorted(procs.items())
    ]


def _signal(p, sig: int) -> None:
    import psutil

    try:
        p.send_signal(sig)
    except psutil.NoSuchProcess:
        pass


def _scan(d: Path, *, remove: bool = True) -> tuple[list[Writer], list[Writer]]:
    """(dead, live) writers of the directory `d`; with `remove`, the dead ones' files go."""
    dead, live = [], []
    for path in sorted(d.glob("*.json")):
        try:
            w = Writer(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            w = None  # written by a process killed mid-write: dead, or about to be rewritten
        held = next((h for p, h, _ in _HELD.values() if p == path), None)
        if held is not None:  # our own file (an flock of ours would not block us)
            if w is not None:
                live.append(w)
            continue
        try:
            with open(path) as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if w is not None:
                live.append(w)
            continue
        except FileNotFoundError:
            continue
        if w is not None:
            dead.append(w)
        if remove:
            path.unlink(missing_ok=True)
    return dead, live


class _gate:
    """A short exclusive lock around checking and registering writers."""

    def __init__(self, d: Path):
        self.path = d / ".gate"

    def __enter__(self):
        self.f = open(self.path, "a")  # noqa: SIM115
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _command() -> str:
    return " ".join(sys.argv)[:300]
