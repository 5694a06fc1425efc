"""docker/: what can be checked without a Docker engine (none runs on these machines)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def test_compose_services_are_wired():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    s = compose["services"]
    assert set(s) == {"postgres", "prefect-server", "mlflow", "worker"}
    assert (
        "postgres:5432/prefect"
        in s["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    )
    assert (
        "postgres:5432/mlflow" in s["mlflow"]["command"]
        and "/mlartifacts" in s["mlflow"]["command"]
    )
    worker = s["worker"]["environment"]
    assert (
        worker["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        and worker["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    )
    assert s["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == [
        "gpu"
    ]
    assert set(compose["volumes"]) >= {"pgdata", "mlartifacts"}


def test_every_compose_variable_is_documented():
    used = set(re.findall(r"\$\{(\w+)", (DOCKER / "compose.yaml").read_text()))
    documented = set(re.findall(r"`(\w+)`", (DOCKER / "README.md").read_text()))
    assert used and used <= documented, used - documented


def test_dockerfile_copies_only_what_exists():
    root = DOCKER.parent
    copies = [
        ln for ln in (DOCKER / "Dockerfile").read_text().splitlines() if ln.startswith("COPY")
    ]
    assert copies, "the Dockerfile copies nothing of sparks"
    for line in copies:
        for src in line.split()[1:-1]:
            assert (root / src).exists(), src
