"""Local operations: `sparks up` / `sparks down` (and `make up` / `make down`).

`up` starts, on 127.0.0.1, a Prefect server (SQLite under a project-local PREFECT_HOME), an MLflow
tracking server (SQLite and artifacts under mlflow/data/), and a Prefect process worker for the
work pool `sparks`; then registers every deployment in flows/prefect.yaml and prints the URLs.
Each process runs in its own session with a pidfile under .sparks/; a second `up` finds them
running, and `down` stops only the processes whose pidfiles `up` wrote.
Ports: SPARKS_PREFECT_PORT (4200), SPARKS_MLFLOW_PORT (5000); state: SPARKS_STATE_DIR (.sparks);
MLflow store: SPARKS_MLFLOW_DATA (mlflow/data).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sparks.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
POOL = "sparks"


@dataclass(frozen=True)
class Service:
    name: str
    cmd: list[str]
    health: str | None  # URL answering 200 once ready; None: alive is ready
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Stack:
    prefect_port: int
    mlflow_port: int
    state: Path
    prefect_home: Path
    # where the servers listen: loopback unless SPARKS_BIND_HOST says otherwise (docs: put
    # authentication in front of them before binding a reachable address)
    host: str = "127.0.0.1"
    # Prefect's database: sqlite (under PREFECT_HOME), postgres (a local server sparks starts,
    # data under STATE/postgres) or a postgresql:// URL (e.g. docker/compose.yaml's)
    db: str = "sqlite"
    postgres_port: int = 5433

    @property
    def prefect_db_url(self) -> str | None:
        """Prefect's database URL (None: its SQLite default)."""
        if self.db == "sqlite":
            return None
        if self.db == "postgres":
            return f"postgresql+asyncpg://sparks@127.0.0.1:{self.postgres_port}/prefect"
        return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+asyncpg://", self.db)

    @property
    def client_host(self) -> str:
        """The address local clients use (loopback when the servers listen on every address)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def prefect_api(self) -> str:
        return f"http://{self.client_host}:{self.prefect_port}/api"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.client_host}:{self.mlflow_port}"

    def env(self) -> dict:
        """What a client (or the worker's flow runs) needs to reach both servers."""
        return {
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_API_URL": self.prefect_api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "SPARKS_ROOT": str(ROOT),
            "SPARKS_TIMEZONE": local_timezone(),
        }


def local_timezone() -> str:
    """The machine's IANA time zone (the nightly cron runs in it), SPARKS_TIMEZONE overriding."""
    if tz := os.environ.get("SPARKS_TIMEZONE"):
        return tz
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:
        return "UTC"


def stack_from_env(db: str | None = None) -> Stack:
    """The stack as the environment sets it; the database as given, or as the last `up` chose
    (STATE/db), or SPARKS_DB, or sqlite."""
    state = Path(os.environ.get("SPARKS_STATE_DIR", ROOT / ".sparks"))
    chosen = state / "db"
    db = db or (chosen.read_text().strip() if chosen.is_file() else None)
    db = db or os.environ.get("SPARKS_DB", "sqlite")
    if db not in ("sqlite", "postgres") and not re.match(r"^postgres(ql)?(\+\w+)?://", db):
        raise ValueError(f"--db {db}: give sqlite, postgres, or a postgresql:// URL")
    return Stack(
        int(os.environ.get("SPARKS_PREFECT_PORT", 4200)),
        int(os.environ.get("SPARKS_MLFLOW_PORT", 5000)),
        state,
        Path(os.environ.get("PREFECT_HOME", ROOT / ".prefect")),
        os.environ.get("SPARKS_BIND_HOST", "127.0.0.1"),
        db,
        int(os.environ.get("SPARKS_POSTGRES_PORT", 5433)),
    )


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def mlflow_data() -> Path:
    return Path(os.environ.get("SPARKS_MLFLOW_DATA", ROOT / "mlflow" / "data"))


def services(s: Stack) -> list[Service]:
    data = mlflow_data()
    pg = [postgres_service(s)] if s.db == "postgres" else []
    return pg + [
        Service(
            "prefect-server",
            # `prefect server start` with SQLite write transactions taken at once (no
            # "database is locked" at every worker poll: sparks/stack/prefect_server.py)
            [
                _bin("python"),
                "-m",
                "sparks.stack.prefect_server",
                "--host",
                s.host,
                "--port",
                str(s.prefect_port),
            ],
            f"{s.prefect_api}/health",
            # the browser UI calls this address (default :4200, wrong on any other port)
            {"PREFECT_UI_API_URL": s.prefect_api}
            | ({"PREFECT_API_DATABASE_CONNECTION_URL": url} if (url := s.prefect_db_url) else {}),
        ),
        Service(
            "mlflow-server",
            [
                _bin("mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{data}/mlflow.db",
                "--default-artifact-root",
                str(data / "artifacts"),
                "--host",
                s.host,
                "--port",
                str(s.mlflow_port),
                "--workers",
                "1",
            ],
            f"{s.mlflow_uri}/health",
        ),
        Service(
            "prefect-worker",
            [_bin("prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
            None,
        ),
    ]


def postgres_service(s: Stack) -> Service:
    """A local PostgreSQL server for Prefect: data under STATE/postgres, 127.0.0.1 only, trust
    authentication for the local user `sparks` (run as the `postgres` user when sparks is root)."""
    data = s.state / "postgres"
    cmd = [_pg_bin("postgres"), "-D", str(data), "-p", str(s.postgres_port),
           "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
           "-c", "max_connections=100"]  # fmt: skip
    return Service("postgres", _as_postgres(cmd), f"tcp://127.0.0.1:{s.postgres_port}")


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise UserError(
            f"PostgreSQL's {name} not found: install PostgreSQL (apt-get install postgresql), or "
            "give an existing server: sparks up --db postgresql://USER:PASSWORD@HOST:PORT/prefect"
        )
    return str(found)


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    if os.geteuid() != 0:
        return cmd
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise UserError(
            "PostgreSQL does not run as root and there is no `postgres` user: create one "
            "(useradd postgres) or run sparks up as another user"
        ) from None
    return ["runuser", "-u", "postgres", "--", *cmd]


def _init_postgres(s: Stack) -> None:
    """The data directory, once (initdb), owned by whoever runs the server."""
    data = s.state / "postgres"
    if (data / "PG_VERSION").is_file():
        return
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        reach = subprocess.run(_as_postgres(["test", "-w", str(data)]), capture_output=True)
        if reach.returncode != 0:
            raise UserError(
                f"the postgres user cannot reach {data} (a parent directory is private): set "
                "SPARKS_STATE_DIR to a directory other users can traverse"
            )
    done = subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "sparks", "--auth=trust", "-E", "UTF8"]),
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise UserError(f"initdb {data} failed: {(done.stdout + done.stderr).strip()[-600:]}")


def _create_prefect_database(s: Stack) -> None:
    """Prefect's database on the local server, if it is not there yet."""
    import asyncio

    import asyncpg

    async def create() -> None:
        con = await asyncpg.connect(
            host="127.0.0.1", port=s.postgres_port, user="sparks", database="postgres"
        )
        try:
            if not await con.fetchval("SELECT 1 FROM pg_database WHERE datname = 'prefect'"):
                await con.execute("CREATE DATABASE prefect")
        finally:
            await con.close()

    asyncio.run(create())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _pid(s: Stack, svc: Service) -> int | None:
    f = s.state / f"{svc.name}.pid"
    if f.is_file():
        pid = int(f.read_text())
        if _alive(pid):
            return pid
        f.unlink()
    return None


def _healthy(url: str) -> bool:
    if url.startswith("tcp://"):  # a database: accepting connections is ready
        import socket

        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                return True
        except OSError:
            return False
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def _wait(svc: Service, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:  # poll, not kill(pid, 0): a dead child is a zombie until reaped
            raise UserError(f"{svc.name} exited while starting; see {log}")
        if svc.health is None or _healthy(svc.health):
            return
        time.sleep(0.5)
    raise UserError(f"{svc.name} did not answer {svc.health} within {timeout:.0f}s; see {log}")


def up(s: Stack | None = None, *, timeout: float = 180, deploy: bool = True) -> Stack:
    """Start what is not running, register the deployments, print the URLs. Idempotent."""
    s = s or stack_from_env()
    s.state.mkdir(parents=True, exist_ok=True)
    (s.state / "db").write_text(s.db)  # `down` and the next `up` know which database
    (mlflow_data() / "artifacts").mkdir(parents=True, exist_ok=True)
    env = os.environ | s.env()
    for svc in services(s):
        if (pid := _pid(s, svc)) is not None:
            print(f"[sparks] {svc.name} already running (pid {pid})")
            continue
        print(f"[sparks] starting {svc.name} ...", flush=True)  # each takes seconds to answer
        if svc.name == "mlflow-server":  # the store is made (or repaired) whole before it serves
            from sparks.log.store import ensure_store

            ensure_store(f"sqlite:///{mlflow_data()}/mlflow.db")
        if svc.name == "postgres":
            _init_postgres(s)
        if svc.name == "prefect-worker":
            _prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env)
        log = s.state / f"{svc.name}.log"
        with open(log, "a") as logf:
            run_env = env | svc.env
            if svc.name == "prefect-server":
                run_env.pop(
                    "PREFECT_API_URL", None
                )  # the server is the API; it must not point elsewhere
            proc = subprocess.Popen(
                svc.cmd,
                cwd=ROOT,
                env=run_env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (s.state / f"{svc.name}.pid").write_text(str(proc.pid))
        _wait(svc, proc, timeout, log)
        if svc.name == "postgres":
            _create_prefect_database(s)
        print(f"[sparks] {svc.name} started (pid {proc.pid}, log {log})")
    if deploy:
        _prefect(
            [
                "--no-prompt",
                "deploy",
                "--all",
                "--prefect-file",
                str(ROOT / "flows" / "prefect.yaml"),
            ],
            env,
        )
        print("[sparks] deployments registered from flows/prefect.yaml")
    print(
        f"[sparks] Prefect UI: http://{s.client_host}:{s.prefect_port}  (deployments: /deployments)"
    )
    print(f"[sparks] MLflow UI:  {s.mlflow_uri}")
    if s.db != "sqlite":
        where = f"127.0.0.1:{s.postgres_port}" if s.db == "postgres" else "the given server"
        print(f"[sparks] Prefect's database: PostgreSQL at {where}")
    print(
        f"[sparks] for clients: export PREFECT_API_URL={s.prefect_api} MLFLOW_TRACKING_URI={s.mlflow_uri}"
    )
    return s


def _prefect(args: list[str], env: dict) -> None:
    done = subprocess.run(
        [_bin("prefect"), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise UserError(
            f"prefect {' '.join(args[:3])} failed: {(done.stdout + done.stderr).strip()[-800:]}"
        )


def down(s: Stack | None = None) -> list[str]:
    """Stop the processes `up` started (by their pidfiles), newest first; nothing else."""
    s = s or stack_from_env()
    stopped = []
    for svc in reversed(services(s)):
        pid = _pid(s, svc)
        if pid is None:
            continue
        try:  # PostgreSQL: SIGINT is its fast shutdown (SIGTERM waits for every client)
            os.killpg(pid, signal.SIGINT if svc.name == "postgres" else signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        (s.state / f"{svc.name}.pid").unlink(missing_ok=True)
        stopped.append(svc.name)
        print(f"[sparks] {svc.name} stopped")
    if not stopped:
        print("[sparks] nothing to stop: no process started by `sparks up` is running")
    return stopped
