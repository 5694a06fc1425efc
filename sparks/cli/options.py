"""Options made from the settings' own fields: each default, range and help is declared once, on
the field (`SnapshotSpec`, `SamplingSpec`, the config sections), and the flag reads it there."""

from __future__ import annotations

import typing
from types import SimpleNamespace
from typing import Any

import typer
from pydantic import BaseModel

SAID = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
_OK = {
    "ge": lambda v, x: v >= x,
    "gt": lambda v, x: v > x,
    "le": lambda v, x: v <= x,
    "lt": lambda v, x: v < x,
}
_FROM_FIELD: Any = object()  # "the field's default"


class Args(SimpleNamespace):
    """A command's parsed options by name, and `given`: the names written on the command line
    (not left at their defaults)."""

    given: set[str]


def field_bounds(model: type[BaseModel], name: str) -> dict[str, float]:
    """The ge/gt/le/lt bounds a field declares, those of a union's numeric member included."""
    f = model.model_fields[name]
    metadata = list(f.metadata)
    for member in typing.get_args(f.annotation):
        if typing.get_origin(member) is typing.Annotated:
            metadata += [
                m
                for extra in typing.get_args(member)[1:]
                for m in getattr(extra, "metadata", [extra])
            ]
    return {op: getattr(m, op) for m in metadata for op in SAID if getattr(m, op, None) is not None}


def bounded(bounds: dict[str, float], where: str = ""):
    """A callback holding a value (or each of a repeated option's values) to `bounds`."""

    def check(value):
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is None or isinstance(v, str):
                continue
            for op, limit in bounds.items():
                if not _OK[op](v, limit):
                    raise typer.BadParameter(f"must be {SAID[op]} {limit}{where}, got {v}")
        return value

    check.bounds = bounds  # type: ignore[attr-defined]  # read by tests/test_ranges.py
    return check


def number(**bounds: float):
    """A numeric option's range when no settings field declares it (a step, a grace period)."""
    return bounded(bounds)


def field_option(
    model: type[BaseModel],
    name: str,
    *decls: str,
    default: Any = _FROM_FIELD,
    help: str | None = None,
    parser=None,
    **kw: Any,
):
    """An option for settings field `model.name`: its default (unless `default` overrides it,
    e.g. None for "the run's own"), its range and its description as help."""
    f = model.model_fields[name]
    check = bounded(field_bounds(model, name), f" (as {model.__name__}.{name})")
    check.field = (model, name)  # read by tests/test_cli_defaults.py
    if default is _FROM_FIELD:
        default = f.get_default(call_default_factory=True)
    text = help or (f.description or "").rstrip(".")
    if check.bounds:
        text += "; " + ", ".join(f"{SAID[op]} {v}" for op, v in check.bounds.items())
    return typer.Option(default, *decls, help=text, callback=check, parser=parser, **kw)


def steps_value(text: str) -> int | str:
    """--steps: a whole number, or auto."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number or auto") from None
