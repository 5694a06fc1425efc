"""Write docs/commands.md from the `sparks` parser itself: every command's usage and options.

python tools/cli_docs.py          # rewrite docs/commands.md
python tools/cli_docs.py --check  # exit 1 if it is out of date (tests/test_docs.py)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "commands.md"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    os.environ["COLUMNS"] = "100"  # argparse wraps help text to the terminal: fix it
    from sparks.cli import build_parser

    parser = build_parser()
    out = [
        "# Commands",
        "",
        "Every `sparks` command with its options, generated from the parser by",
        "`python tools/cli_docs.py` (a test fails when this page is out of date).",
        "",
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}

    def page(name: str, p: argparse.ArgumentParser) -> None:
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for child, cp in nested[0].choices.items():
                page(f"{name} {child}", cp)
            return
        out.extend([f"## `sparks {name}`", "", helps.get(name.split()[0], "") or "", ""])
        out.extend(["```", p.format_help().rstrip(), "```", ""])

    for name, p in sub.choices.items():
        page(name, p)
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
