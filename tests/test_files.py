"""The write-failure line: one line, its advice once, however deep the failure was wrapped."""

from __future__ import annotations

import errno
from pathlib import Path

from sparks.files import write_failure


def test_a_wrapped_write_failure_says_its_advice_once():
    inner = write_failure(Path("runs/x/ledger.parquet"), OSError(errno.ENOSPC, "No space left"))
    outer = write_failure(Path("runs/x/stage0-sft"), inner)
    assert str(inner).startswith("cannot write runs/x/ledger.parquet: No space left; ")
    assert str(outer).startswith(
        "cannot write runs/x/stage0-sft (runs/x/ledger.parquet): No space left; "
    )
    assert str(outer).count("free disk space") == 1
