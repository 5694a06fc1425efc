#!/usr/bin/env bash
# The MLflow tracking server for sparks: SQLite backend and artifacts under mlflow/data/ (the same
# store `make demo` writes to when no tracking URI is configured), on 127.0.0.1 only.
#   mlflow/server.sh [PORT]        (default $SPARKS_MLFLOW_PORT or 5000; one worker answers /health in ~9 s, four in ~18 s)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-${SPARKS_MLFLOW_PORT:-5000}}"  # the variable `sparks up` reads too
mkdir -p mlflow/data/artifacts
# the store is created (or a half-created one repaired) under a temporary name and renamed into
# place before the server opens it: a kill during MLflow's migrations cannot break it for good
.venv/bin/python -c "from sparks.log.store import ensure_store; ensure_store('sqlite:///$PWD/mlflow/data/mlflow.db')"
exec .venv/bin/mlflow server \
  --backend-store-uri "sqlite:///$PWD/mlflow/data/mlflow.db" \
  --default-artifact-root "$PWD/mlflow/data/artifacts" \
  --host 127.0.0.1 --port "$PORT" --workers 1
