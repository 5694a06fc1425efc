"""A Dask worker plugin for the fan-out test: the first worker to start a task SIGKILLs itself
(a real kill, no cleanup) once a snapshot is being written under ROOT (a `.circuit.tmp-*`
directory exists), or after `patience` seconds if none is seen. Only one worker, only once: a
marker file created with O_EXCL says which, and what it saw."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin


class KillOnce(WorkerPlugin):
    name = "sparks-kill-once"

    def __init__(self, root: str, marker: str, patience: float = 30.0):
        self.root, self.marker, self.patience = root, marker, patience

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        threading.Thread(target=self._kill_later, args=(fd, str(key)), daemon=True).start()

    def _kill_later(self, fd: int, key: str) -> None:
        deadline, seen = time.monotonic() + self.patience, "timeout"
        while time.monotonic() < deadline:
            if any(Path(self.root).glob("*/.circuit.tmp-*")):
                seen = "mid-write"
                break
            time.sleep(0.002)
        os.write(fd, f"{seen} {key}".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
