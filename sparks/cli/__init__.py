"""The `sparks` command line (Typer): one module per command group, each command validating its
input and then calling one library function.

    world.py        world build
    snapshots.py    snapshot, pairs, analyze
    runs.py         run, train, demo, stop, mlflow-sync
    evaluation.py   eval, evaluate-checkpoints, ablate
    compare.py      compare
    stack.py        up, down

Flags read their defaults, ranges and help from the settings' fields (`options.field_option`).
What a user can fix (`sparks.errors.USER_ERRORS`: a malformed config, a missing path, a busy run
directory) is printed as one line, `sparks: error: ...`, exit status 2, and nothing already
written is touched; anything else keeps its traceback. `sparks --debug ...` shows every traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer._click import exceptions as click_errors

# isort: off
# the command groups, in the order `sparks --help` lists them
from sparks.cli import world, runs, snapshots, evaluation, compare, stack  # noqa: F401

# isort: on
from sparks.cli.app import DEBUG, app
from sparks.errors import USER_ERRORS

__all__ = ["app", "commands", "main"]


def commands() -> list[tuple[list[str], Any]]:
    """(path, command) of every leaf command of `sparks`, e.g. (["world", "build"], ...): what
    tools/cli_docs.py documents and the tests walk."""
    found = []

    def walk(path: list[str], cmd: Any) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk([*path, name], sub)
        else:
            found.append((path, cmd))

    walk([], typer.main.get_command(app))
    return found


def _close_progress_bars() -> None:
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", []) or []):
        bar.close()


def _say(line: str) -> int:
    _close_progress_bars()  # the error is the last line, not under a half-drawn bar
    print(f"sparks: error: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    DEBUG["on"] = False
    try:
        result = command.main(
            args=sys.argv[1:] if argv is None else list(argv),
            prog_name="sparks",
            standalone_mode=False,
        )
    except click_errors.NoArgsIsHelpError as e:  # `sparks` alone: its help
        print(e.ctx.get_help() if e.ctx else "", file=sys.stderr)
        return 2
    except click_errors.UsageError as e:  # a bad flag or value, said in one line
        where = e.ctx.command_path if e.ctx else "sparks"
        said = e.format_message().replace("Value error, ", "")
        if isinstance(e, click_errors.BadParameter) and e.param is not None and e.message:
            name = (e.param.opts or [e.param.name])[-1]
            said = f"argument {name}: {e.message.replace('Value error, ', '')}"
        return _say(f"{said} (see: {where} --help)")
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        return _say("interrupted")
    except USER_ERRORS as e:
        if DEBUG["on"]:
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return _say(first)
    except RuntimeError as e:
        if DEBUG["on"] or "ephemeral Prefect API server" not in str(e):
            raise
        # Prefect's own line says what, not what to do
        return _say(
            f"{str(e).splitlines()[0]} A busy machine starts it slowly: start a server with "
            "`sparks up`, or give it longer: PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120"
        )
    return int(result) if isinstance(result, int) else 0
