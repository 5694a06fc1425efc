"""Small file helpers every stage shares: atomic directory writes and JSON lines.

Nothing sparks writes (worlds, snapshots, ledgers) is ever visible half-written: it is built under a
temporary name beside its target and renamed into place, which is atomic on one filesystem.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; rename it to `target` on success.

    On error the temporary directory is removed and `target` is untouched. `target` must not exist.
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists: choose another output directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(text)
    os.replace(tmp, path)


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write one JSON object per line; returns the number of records."""
    n = 0
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSON-lines file; a bad line raises ValueError naming the file and line."""
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{i}: not valid JSON ({e.msg}); fix or remove that line"
                ) from e
    return out
