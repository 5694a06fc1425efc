"""The `sparks` Typer application every command group registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="sparks",
    help="Workflow-orchestrated training-checkpoint tracker: a circuit snapshot of the attention "
    "heads at every post-training save.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # sparks says errors in one line (sparks.cli.main)
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
)

world_app = typer.Typer(help="the embedded tiny world", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(world_app, name="world")

DEBUG = {"on": False}  # --debug / SPARKS_DEBUG=1: tracebacks for every error


@app.callback()
def _root(
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar="SPARKS_DEBUG",
        help="show the full traceback of any error (user errors too)",
    ),
) -> None:
    DEBUG["on"] = debug
