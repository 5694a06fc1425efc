"""How often a kill inside MLflow's own store creation breaks the store, and whether sparks repairs it.

    python benchmarks/store_kills.py [--every 3]

For every EVERY-th schema migration step, MLflow creates a fresh SQLite store in place (as
`mlflow server` or a client does) and is SIGKILLed before that step is stamped. Then, in fresh
processes: does plain MLflow open the store, and does `sparks.log.store.ensure_store` repair it so
that MLflow opens it? Prints one row per kill point and the totals.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

KILLED = """
import os, signal, sys
import alembic.runtime.migration as m
n, seen, original = int(sys.argv[2]), [0], m.HeadMaintainer.update_to_step
def update_to_step(self, step):
    seen[0] += 1
    if seen[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, step)
m.HeadMaintainer.update_to_step = update_to_step
from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine
_initialize_tables(create_sqlalchemy_engine(sys.argv[1]))
"""
OPENS = "from mlflow.tracking import MlflowClient; MlflowClient({uri!r}).search_experiments()"
REPAIR = "from sparks.log.store import ensure_store; print(ensure_store({uri!r}))"


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=3)
    args = ap.parse_args()
    broken = repaired = probed = 0
    print(f"{'kill before step':>16}  {'plain MLflow':<60}  sparks")
    with tempfile.TemporaryDirectory() as d:
        n = 1
        while True:
            db = Path(d) / f"k{n}.db"
            uri = f"sqlite:///{db}"
            if _run(KILLED, uri, str(n)).returncode != -9:
                break  # fewer steps than n: creation completed
            probed += 1
            plain = _run(OPENS.format(uri=uri))
            errors = [ln for ln in plain.stderr.splitlines() if "Error" in ln] or ["failed"]
            why = "opens" if plain.returncode == 0 else errors[-1].split("Error: ")[-1][:60]
            broken += plain.returncode != 0
            copy = Path(d) / f"r{n}.db"
            copy.write_bytes(db.read_bytes())
            done = _run(REPAIR.format(uri=f"sqlite:///{copy}")).stdout.strip().splitlines()[-1]
            ok = _run(OPENS.format(uri=f"sqlite:///{copy}")).returncode == 0
            repaired += ok
            print(f"{n:>16}  {why:<60}  {done}, {'opens' if ok else 'STILL BROKEN'}")
            n += args.every
    print(
        f"{probed} kill points: {broken} broke plain MLflow's store for good; "
        f"{repaired} of {probed} open after sparks' repair"
    )


if __name__ == "__main__":
    main()
