"""Write docs/commands.md from the `sparks` commands themselves: every command's usage and options.

python tools/cli_docs.py          # rewrite docs/commands.md
python tools/cli_docs.py --check  # exit 1 if it is out of date (tests/test_docs.py)
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "commands.md"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    os.environ["COLUMNS"] = "100"  # help text wraps to the terminal: fix it
    os.environ["TERM"] = "dumb"
    from sparks.cli import commands, main

    out = [
        "# Commands",
        "",
        "Every `sparks` command with its options, generated from the commands themselves by",
        "`python tools/cli_docs.py` (a test fails when this page is out of date). Every command",
        "takes `sparks --debug COMMAND ...` to show the traceback of an error.",
        "",
    ]
    for path, _cmd in commands():
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            main([*path, "--help"])
        out.extend([f"## `sparks {' '.join(path)}`", ""])
        out.extend(["```", text.getvalue().rstrip(), "```", ""])
    return "\n".join(out)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python tools/cli_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
