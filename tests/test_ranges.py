"""Every numeric input has a range, and a value outside it is refused in one line naming it.

Not a hand list: the test walks the CLI's commands (every subcommand's numeric options) and the
configs' pydantic models (every numeric field, nested sections and stage lists included), and
tries a value just outside each declared bound. A numeric option or field without a range fails
the test unless it is in UNBOUNDED, with the reason it may take any value.
"""

from __future__ import annotations

import typing

import pytest
import yaml
from pydantic import BaseModel

from sparks.cli import commands, main
from sparks.config import AblationConfig, RunConfig

UNBOUNDED = {
    "ablate --scale": "any real: 0 ablates, 0.5 halves, 1.3 amplifies, -1 reverses a head",
    "scales": "AblationConfig.scales: any real, as --scale",
    "control_scales": "AblationConfig.control_scales: a subset of scales",
}


def _outside(bounds: dict, kind: type) -> list:
    """A value just outside each bound."""
    step = 1 if kind is int else 0.5
    out = []
    for op, limit in bounds.items():
        limit = kind(limit) if kind is int else float(limit)
        out.append({"ge": limit - step, "gt": limit, "le": limit + step, "lt": limit}[op])
    return out


def _kind(param) -> type | None:
    """int or float for a numeric option (its annotation, Optional and list unwrapped)."""
    ann = param.type_descriptor.annotation
    if typing.get_origin(ann) is list:
        ann = typing.get_args(ann)[0]
    return ann if ann in (int, float) else None


def _options() -> list[tuple[list[str], typing.Any, list[str]]]:
    """(command path, numeric option, the required arguments filled with placeholders)."""
    found = []
    for path, cmd in commands():
        required = []
        for p in cmd.params:
            if p.param_type_name == "argument" and p.required:
                required.append("x")
            elif p.param_type_name == "option" and p.required:
                required += [p.opts[-1], "x"]
        for p in cmd.params:
            if p.param_type_name == "option" and (_kind(p) or getattr(p.callback, "bounds", None)):
                found.append((path, p, required))
    return found


OPTIONS = _options()


def test_the_walk_finds_the_numeric_options():
    assert len(OPTIONS) >= 40


@pytest.mark.parametrize(
    "path, option, required",
    OPTIONS,
    ids=[f"{' '.join(p)} {o.opts[-1]}" for p, o, _ in OPTIONS],
)
def test_every_numeric_option_refuses_a_value_outside_its_range(path, option, required, capsys):
    name = f"{' '.join(path)} {option.opts[-1]}"
    bounds = getattr(option.callback, "bounds", None)
    if name in UNBOUNDED:
        assert not bounds
        return
    assert bounds, f"{name} declares no range: give it one (sparks.cli.options)"
    kind = _kind(option) or int
    for value in _outside(bounds, kind):
        code = main([*path, *required, option.opts[-1], str(value)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith(f"sparks: error: argument {option.opts[-1]}: must be"), err


METHOD: dict[str, tuple] = {}  # a stage field's path -> the methods (stage kinds) that have it


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type, dict]]:
    """(dotted path, int or float, bounds) of every numeric field, nested models included."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if typing.get_origin(ann) is list:
            ann = typing.get_args(ann)[0]
            if typing.get_origin(ann) is typing.Annotated:  # a discriminated union (stages)
                ann = typing.get_args(ann)[0]
            kinds = [m for m in typing.get_args(ann) or (ann,) if isinstance(m, type)]
            if kinds and all(issubclass(m, BaseModel) for m in kinds):
                seen = {p for p, *_ in out}
                for m in kinds:  # each kind of stage: its own fields, under its method
                    for row in _fields(m, f"{prefix}{name}.0."):
                        if row[0] not in seen:
                            seen.add(row[0])
                            out.append(row)
                            METHOD[row[0]] = typing.get_args(m.model_fields["method"].annotation)
                continue
        members = typing.get_args(ann) if typing.get_origin(ann) is not None else (ann,)
        for m in members:
            metadata = list(f.metadata)
            if typing.get_origin(m) is typing.Annotated:
                m, *extra = typing.get_args(m)
                metadata += [x for e in extra for x in getattr(e, "metadata", [e])]
            if isinstance(m, type) and issubclass(m, BaseModel):
                out += _fields(m, f"{prefix}{name}.")
            elif m in (int, float):
                bounds = {
                    op: getattr(x, op)
                    for x in metadata
                    for op in ("ge", "gt", "le", "lt")
                    if getattr(x, op, None) is not None
                }
                out.append((f"{prefix}{name}", m, bounds))
    return out


def _nested(path: str, value) -> dict:
    """{'stages': [{'max_steps': 0}]} from 'stages.0.max_steps'."""
    head, _, rest = path.partition(".")
    if not rest:
        return {head: value}
    if rest.startswith("0."):
        return {head: [_nested(rest[2:], value)]}
    return {head: _nested(rest, value)}


FIELDS = [("run", *f) for f in _fields(RunConfig)] + [
    ("ablation", *f) for f in _fields(AblationConfig)
]


def test_the_walk_finds_the_numeric_fields():
    assert len(FIELDS) >= 40


@pytest.mark.parametrize("kind_of, path, kind, bounds", FIELDS, ids=[f[1] for f in FIELDS])
def test_every_numeric_config_field_refuses_a_value_outside_its_range(
    kind_of, path, kind, bounds, tmp_path, capsys
):
    if path.split(".")[-1] in UNBOUNDED:
        return
    assert bounds, f"{path} declares no range: give its Field ge/gt/le/lt"
    for value in _outside(bounds, kind):
        cfg = tmp_path / "c.yaml"
        data = _nested(path, value)
        if path.startswith("stages.0."):
            data["stages"][0].setdefault("method", METHOD[path][0])
        if kind_of == "ablation":
            data.setdefault("model", str(tmp_path / "model"))  # the one required field
        cfg.write_text(yaml.safe_dump(data))
        argv = ["train", str(cfg)] if kind_of == "run" else ["ablate", "--config", str(cfg)]
        assert main(argv) == 2, f"{path} = {value} accepted"
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("sparks: error: "), err
        assert path in err[0] or path.replace(".0.", ".") in err[0], err
        assert list(tmp_path.iterdir()) == [cfg], "something was written"
