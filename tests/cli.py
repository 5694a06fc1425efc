"""The `sparks` command in the test's own process: the same parser, commands, exit statuses and
one-line errors as `python -m sparks.cli`, without paying its ~7 s of imports again. Tests of what
only a separate process shows (signals, sessions, launches, the console script) run it for real."""

from __future__ import annotations

import io
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path


def sparks(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `sparks ARGS` in `cwd`; stdout, stderr and the exit status as subprocess gives them."""
    from sparks.cli import main

    out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's own refusals
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
