"""The map in ARCHITECTURE.md matches the code, and imports point one way.

- sparks never imports the top-level `flows` package (its deployments' entry points import sparks);
- no module imports itself back through others (no cycle, lazy imports inside functions included);
- between rooms (the packages under sparks/, and its top-level modules) the imports form no cycle,
  leaf modules aside: a module that imports nothing of sparks (a spec, a constant) may be imported
  from anywhere;
- every path ARCHITECTURE.md names exists, and every room and module of sparks/ is named there.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPARKS = ROOT / "sparks"


def _modules() -> dict[str, Path]:
    out = {}
    for p in SPARKS.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, top-level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {
    m: {d for n in _imports(p) if n.startswith("sparks") and (d := _resolve(n)) and d != m}
    for m, p in MODULES.items()
}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph`, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w) :] + [w]
            if w not in state and (c := visit(w)):
                return c
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (c := visit(v)):
            return c
    return None


def _room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_sparks_never_imports_the_top_level_flows_package():
    upward = {
        m: sorted(n for n in _imports(p) if n == "flows" or n.startswith("flows."))
        for m, p in MODULES.items()
    }
    assert not {m: n for m, n in upward.items() if n}


def test_no_module_imports_itself_back():
    assert _cycle(GRAPH) is None


def test_rooms_import_one_way():
    leaves = {m for m, deps in GRAPH.items() if not deps}
    rooms: dict[str, set[str]] = defaultdict(set)
    for m, deps in GRAPH.items():
        for d in deps - leaves:
            if _room(d) != _room(m):
                rooms[_room(m)].add(_room(d))
    assert _cycle(rooms) is None, "rooms that import each other"


def test_the_map_names_what_exists_and_everything_that_exists_is_named():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:sparks|flows|tests|benchmarks|docs|tools)/[\w./-]*)`", text))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"
    rooms = sorted(
        f"sparks/{p.name}/" if p.is_dir() else f"sparks/{p.name}"
        for p in SPARKS.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and p.stem != "__init__")
    )
    unnamed = [r for r in rooms if f"`{r}`" not in text]
    assert not unnamed, f"rooms of sparks/ that ARCHITECTURE.md does not name: {unnamed}"
    modules = sorted(
        p.name
        for p in SPARKS.rglob("*.py")
        if p.parent != SPARKS and p.name != "__init__.py" and not p.name.startswith("_")
    )
    unnamed = [m for m in modules if m not in text]
    assert not unnamed, f"modules that ARCHITECTURE.md does not name: {unnamed}"
