"""The local stack: `up` (Prefect server, MLflow server, a worker, the deployments) and `down`."""

from __future__ import annotations

import typer

from sparks.cli.app import app


@app.command(
    help="start Prefect server, MLflow server and a worker on 127.0.0.1; register deployments"
)
def up(
    no_deploy: bool = typer.Option(False, "--no-deploy", help="start the services only"),
    db: str | None = typer.Option(
        None,
        "--db",
        metavar="sqlite|postgres|URL",
        help="Prefect's database: sqlite (the default), postgres (a local PostgreSQL server "
        "started beside the others: what holds under load), or a postgresql:// URL (e.g. "
        "docker/compose.yaml's); remembered by the next up and down (SPARKS_DB)",
    ),
) -> None:
    from sparks.stack.services import stack_from_env
    from sparks.stack.services import up as stack_up

    stack_up(stack_from_env(db=db), deploy=not no_deploy)


@app.command(help="stop what `sparks up` started")
def down() -> None:
    from sparks.stack.services import down as stack_down

    stack_down()
