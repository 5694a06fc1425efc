"""No setting's default is written twice: the CLI's flags and the library's snapshot functions
read the specs (`SnapshotSpec`, `SamplingSpec`) instead of repeating their defaults."""

from __future__ import annotations

import inspect

import pytest

from sparks.circuits.spec import SnapshotSpec
from sparks.cli import commands
from sparks.evaluate.spec import SamplingSpec

# Flags whose default differs from their field's on purpose, and why.
OVERRIDES = {
    "eval --max-tokens": "2048: real benchmarks' reasoning needs room; the world's runs need 96",
    "evaluate-checkpoints --max-tokens": "as eval",
    "ablate --max-tokens": "as eval",
    "analyze --steps": "None: the run's own setting",
    "analyze --top-k": "None: the run's own setting",
    "compare --stability": "None: the compare config's, else the field's",
}
SPECS = (SnapshotSpec, SamplingSpec)


def _options():
    for path, cmd in commands():
        for p in cmd.params:
            if p.param_type_name == "option":
                yield f"{' '.join(path)} {p.opts[-1]}", p


OPTIONS = dict(_options())


def test_flags_named_after_a_spec_field_read_it():
    """A flag that sets a spec's field is made from it (`field_option`), so its default, range
    and help are the field's."""
    names = {n for spec in SPECS for n in spec.model_fields}
    unbound = [
        name for name, p in OPTIONS.items() if p.name in names and not hasattr(p.callback, "field")
    ]
    assert not unbound, f"flags that repeat a spec field by hand: {unbound}"


@pytest.mark.parametrize(
    "name", sorted(n for n, p in OPTIONS.items() if hasattr(p.callback, "field"))
)
def test_a_flag_made_from_a_field_has_the_fields_default(name):
    p = OPTIONS[name]
    model, field = p.callback.field
    default = model.model_fields[field].get_default(call_default_factory=True)
    if name in OVERRIDES:
        assert p.default != default, f"{name} is listed as an override but has the field's default"
        return
    assert p.default == default, (
        f"{name}: {p.default!r}, but {model.__name__}.{field} is {default!r}"
    )


def test_the_snapshot_functions_take_the_spec_not_its_fields():
    from sparks.circuits import snapshot_checkpoint
    from sparks.circuits.snapshot import build_or_fail, build_snapshot
    from sparks.circuits.steps import attribute_auto
    from sparks.track.hook import CircuitSnapshotCallback, snapshot_missing

    fields = set(SnapshotSpec.model_fields)
    for fn in (snapshot_checkpoint, build_snapshot, build_or_fail, attribute_auto,
               CircuitSnapshotCallback.__init__, snapshot_missing):  # fmt: skip
        params = set(inspect.signature(fn).parameters)
        assert "spec" in params and not params & fields, (fn.__qualname__, params & fields)


def test_the_config_sections_are_the_specs():
    """The run config's snapshot and evaluation sections extend the specs: one declaration."""
    from sparks.config import EvaluationSettings, SnapshotSettings

    assert issubclass(SnapshotSettings, SnapshotSpec) and issubclass(
        EvaluationSettings, SamplingSpec
    )
    for spec, section in ((SnapshotSpec, SnapshotSettings), (SamplingSpec, EvaluationSettings)):
        for name, f in spec.model_fields.items():
            assert section.model_fields[name].default == f.default, name
