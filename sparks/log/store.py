"""A local MLflow store (SQLite) that survives its own creation.

MLflow creates a fresh SQLite store in place: some 70 schema migrations, most of whose DDL SQLite
commits one by one. A process killed in between leaves a store every later call refuses for good
("duplicate column name: creation_time", "table _alembic_tmp_params already exists"). sparks
therefore never lets MLflow create a store where it will be read:

1. lock: `<store>.lock` (an flock, released by the kernel when its holder dies) serialises every
   process that opens the store, ranks and servers included;
2. check: an existing store is healthy when it holds every table MLflow's models declare and is
   stamped with the head revision (SQLite only, no migration run: milliseconds);
3. create: a missing store is migrated under a temporary name beside it, checked, then renamed into
   place; a killed creation leaves only that temporary file, which the next opener removes;
4. repair: an unhealthy store (half-migrated by a kill, or by MLflow before sparks made stores) is
   rebuilt under a temporary name: a fresh schema, then every row it holds carried over table by
   table; the old file is kept beside it as `<store>.broken-<time>`, and one line says so.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sparks.log.console import say


def sqlite_path(uri: str) -> Path | None:
    """The file behind a `sqlite:///` tracking URI (None for a server or an in-memory store)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def ensure_store(uri: str) -> str:
    """Make the store behind `uri` ready to use (create, or repair, it atomically); returns what
    was done: 'healthy', 'created', 'repaired' or 'remote' (not a local SQLite store)."""
    db = sqlite_path(uri)
    if db is None:
        return "remote"
    db.parent.mkdir(parents=True, exist_ok=True)
    with _locked(db):
        for stale in db.parent.glob(_creating(db, pid="*").name):
            stale.unlink(missing_ok=True)  # a creation killed before its rename (we hold the lock)
        if db.is_file() and db.stat().st_size > 0:
            if not (problem := store_problem(db)):
                return "healthy"
            _rebuild(db, problem)
            return "repaired"
        db.unlink(missing_ok=True)  # an empty file (sqlite3 touched it) is no store
        _publish(_fresh(db), db)
        return "created"


def store_problem(db: Path) -> str:
    """Why the SQLite store `db` cannot be used as it is ('' when it can)."""
    try:
        with _connect(db) as con:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            revision = None
            if "alembic_version" in tables:
                row = con.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
    except sqlite3.DatabaseError as e:
        return f"not a readable SQLite database ({e})"
    missing = sorted(_expected_tables() - tables)
    leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if missing or leftovers:
        what = f"{len(missing)} of its tables missing" if missing else "a migration's leftovers"
        return f"half-created or half-migrated ({what}, schema {revision or 'unstamped'})"
    if revision != _head_revision():
        return f"schema {revision or 'unstamped'}, not MLflow's {_head_revision()}"
    return ""


def _fresh(db: Path) -> Path:
    """A new store at MLflow's head schema, under a temporary name beside `db`."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    tmp = _creating(db)
    tmp.unlink(missing_ok=True)
    engine = create_sqlalchemy_engine(f"sqlite:///{tmp}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    if problem := store_problem(tmp):
        raise RuntimeError(f"a fresh MLflow store came out unusable ({problem}); please report it")
    return tmp


def _creating(db: Path, *, pid: int | str | None = None) -> Path:
    """Where a store for `db` is built before its rename (this process's, or `pid`'s)."""
    return db.parent / f".{db.name}.creating-{os.getpid() if pid is None else pid}"


def _publish(tmp: Path, db: Path) -> None:
    """Rename a complete store into place, durably."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, db)
    fd = os.open(db.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rebuild(db: Path, problem: str) -> None:
    """`db` brought to the head schema by MLflow's own migrations run on a copy, or, where they
    fail (a half-migrated store), a fresh store with every row of `db` carried over; `db` itself
    is kept aside either way."""
    tmp = _upgraded_copy(db)
    how = "upgraded by MLflow's migrations"
    if tmp is None:
        tmp = _fresh(db)
        carried, skipped = _carry_rows(db, tmp)
        lost = f"; not carried over: {', '.join(skipped)}" if skipped else ""
        how = f"rebuilt with its {carried} rows carried over{lost}"
    aside = db.with_name(f"{db.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(db, aside)
    for side in ("-journal", "-wal", "-shm"):  # never left to be replayed into the new store
        if (old := db.with_name(db.name + side)).exists():
            os.replace(old, aside.with_name(aside.name + side))
    _publish(tmp, db)
    _forget_engines(db)
    say(f"[sparks] the MLflow store {db} was {problem}: {how}; the old file is kept as {aside}")


def _forget_engines(db: Path) -> None:
    """MLflow keeps one engine per URI for the process: one opened on the old file would go on
    reading it (renamed aside) and migrate it again."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

    for store in (Tracking, Registry):
        for uri in list(store._engine_map):
            if (path := sqlite_path(uri)) is not None and path.resolve() == db.resolve():
                store._engine_map.pop(uri).dispose()


def _upgraded_copy(db: Path) -> Path | None:
    """A copy of `db` that MLflow's migrations brought to the head schema, or None if they fail."""
    from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine

    tmp = _creating(db)
    with _connect(db) as con, sqlite3.connect(tmp) as out:
        con.backup(out)  # a consistent copy, journal rolled back
    out.close()
    engine = create_sqlalchemy_engine(f"sqlite:///{tmp}")
    try:
        _upgrade_db(engine)
    except Exception:  # noqa: BLE001  (a half-migrated store: rebuild instead)
        tmp.unlink(missing_ok=True)
        return None
    finally:
        engine.dispose()
    if store_problem(tmp):
        tmp.unlink(missing_ok=True)
        return None
    return tmp


def _carry_rows(old: Path, new: Path) -> tuple[int, list[str]]:
    """Copy each table's rows from `old` into the same table of `new` (the columns both have;
    a table a batch migration left as _alembic_tmp_NAME is read from there)."""
    carried, skipped = 0, []
    with _connect(new) as con:
        con.execute("ATTACH DATABASE ? AS old", (str(old),))
        old_tables = {
            r[0] for r in con.execute("SELECT name FROM old.sqlite_master WHERE type='table'")
        }
        new_tables = [
            r[0] for r in con.execute("SELECT name FROM main.sqlite_master WHERE type='table'")
        ]
        con.execute("PRAGMA foreign_keys=OFF")
        for table in new_tables:
            if table == "alembic_version":
                continue
            source = table if table in old_tables else f"_alembic_tmp_{table}"
            if source not in old_tables:
                continue
            mine = [r[1] for r in con.execute(f'PRAGMA main.table_info("{table}")')]
            theirs = {r[1] for r in con.execute(f'PRAGMA old.table_info("{source}")')}
            cols = ", ".join(f'"{c}"' for c in mine if c in theirs)
            try:
                cur = con.execute(
                    f'INSERT OR REPLACE INTO main."{table}" ({cols}) '
                    f'SELECT {cols} FROM old."{source}"'
                )
                carried += max(cur.rowcount, 0)
            except sqlite3.DatabaseError as e:
                skipped.append(f"{table} ({e})")
        con.commit()
        con.execute("DETACH DATABASE old")
    return carried, skipped


@contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def _locked(db: Path) -> Iterator[None]:
    with open(db.parent / f"{db.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@cache
def _expected_tables() -> frozenset[str]:
    from mlflow.store.db import utils  # imports every model MLflow declares  # noqa: F401
    from mlflow.store.db.base_sql_model import Base

    return frozenset(Base.metadata.tables)


@cache
def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()
