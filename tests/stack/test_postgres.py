"""`sparks up --db postgres`: Prefect's server on a local PostgreSQL that `up` starts (initdb once,
127.0.0.1 only) and `down` stops; what the API stores lands in Postgres, not SQLite."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.stack.test_stack import _free_port, stack_env

pytestmark = pytest.mark.slow


@pytest.fixture
def shared_tmp():
    """A directory the `postgres` user can reach (pytest's own are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="sparks-pg-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_up_with_postgres_stores_prefects_state_there_and_down_stops_it(shared_tmp):
    tmp_path = shared_tmp
    env = stack_env(tmp_path) | {"SPARKS_POSTGRES_PORT": str(_free_port())}
    env.pop("SPARKS_DB", None)

    def sparks(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sparks.cli", *args],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    up = sparks("up", "--db", "postgres", "--no-deploy")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Prefect's database: PostgreSQL at 127.0.0.1:" in up.stdout
        api = f"http://127.0.0.1:{env['SPARKS_PREFECT_PORT']}/api"
        req = urllib.request.Request(
            f"{api}/flows/", data=json.dumps({"name": "stored-in-postgres"}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status in (200, 201)
        import asyncpg

        async def names() -> list[str]:
            con = await asyncpg.connect(
                host="127.0.0.1", port=int(env["SPARKS_POSTGRES_PORT"]), user="sparks",
                database="prefect",
            )  # fmt: skip
            try:
                return [r["name"] for r in await con.fetch("SELECT name FROM flow")]
            finally:
                await con.close()

        assert "stored-in-postgres" in asyncio.run(names())
        assert not list((tmp_path / "prefect").rglob("*.db"))  # no SQLite database beside it
        pg = int((tmp_path / "state" / "postgres.pid").read_text())
    finally:
        down = sparks("down")  # the choice is remembered: down stops Postgres too
    assert down.returncode == 0 and "postgres stopped" in down.stdout, down.stdout + down.stderr
    assert not psutil.pid_exists(pg) or psutil.Process(pg).status() == psutil.STATUS_ZOMBIE
