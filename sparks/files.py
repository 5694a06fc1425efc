"""Small file helpers every stage shares: atomic directory writes and JSON lines.

Nothing sparks writes (worlds, snapshots, ledgers) is ever visible half-written: it is built under a
temporary name beside its target and renamed into place, which is atomic on one filesystem.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sparks.errors import UserError

WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class OutputWriteError(UserError):
    """An output that could not be written (disk full, file too large, read-only, no permission);
    the message names the path. Nothing half-written is left where it would be read."""

    target: str  # the path(s) named
    why: str  # what the writer said


def is_write_error(e: BaseException) -> bool:
    """An error from writing a file (as OSError, or as torch's and safetensors' wrappers of one)."""
    if isinstance(e, OutputWriteError):
        return True
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        return True
    text = str(e).lower()
    markers = ("no space left", "file too large", "disk quota", "read-only file system")
    return any(m in text for m in markers) or (
        "writ" in text and any(w in text for w in ("file", "disk", "space", "errno"))
    )


def write_failure(target: Path, e: BaseException) -> OutputWriteError:
    """The one-line error for `target` that could not be written because of `e`; when `e` is
    already such an error, the file it names is kept and its advice is said once, not twice."""
    named = str(target)
    if isinstance(e, OutputWriteError):
        named, why = f"{target} ({e.target})", e.why
    else:
        why = getattr(e, "strerror", None) or str(e).splitlines()[0][:160]
    error = OutputWriteError(
        f"cannot write {named}: {why}; free disk space or choose another output directory "
        "(what was written before is kept, and a rerun resumes from it)"
    )
    error.target, error.why = named, why
    return error


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
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_write_error(e) and not isinstance(e, OutputWriteError):
            raise write_failure(target, e) from e
        raise


@contextmanager
def replacing_dir(target: Path) -> Iterator[Path]:
    """Like `atomic_dir`, but `target` may exist: the new directory replaces it only once complete
    (the old one is renamed aside, then removed); on error the old one is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if is_write_error(e):
            raise write_failure(path, e) from e
        raise


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


def render_template(package: str, template: str, /, **context) -> str:
    """A page from `package`'s templates/ folder (Jinja2), everything inserted HTML-escaped
    unless marked safe (markupsafe.Markup): the report's and the viewer's HTML live there."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader(package, "templates"),
        autoescape=select_autoescape(["jinja", "html"], default=True),
    )
    return env.get_template(template).render(**context)
