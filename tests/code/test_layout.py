"""The package's layout: its packages (gate, store, serving, ...) and top-level modules import
one another without a cycle, so every import points down and a package can be read without
the ones above it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import precast

ROOT = Path(precast.__file__).parent


def unit(module: str) -> str:
    """The package or top-level module of `precast.<...>` that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "precast"


def imports_between_units() -> dict[str, set[str]]:
    """unit -> the other units it imports (top-level and function-level imports alike)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        module = ".".join(("precast", *path.relative_to(ROOT).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("precast"):
                targets = ([f"precast.{a.name}" for a in node.names]
                           if node.module == "precast" else [str(node.module)])
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("precast")]
            for target in targets:
                if unit(target) != unit(module):
                    edges[unit(module)].add(unit(target))
    return edges


def cycle_from(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    """A path of imports from `start` back to itself, or None."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_packages_import_each_other_without_a_cycle() -> None:
    edges = imports_between_units()
    assert {"gate", "store", "serving", "monitoring", "orchestration", "steps", "cli"} <= set(edges)
    cycles = [c for u in sorted(edges) if (c := cycle_from(u, edges))]
    assert not cycles, "imports that point up: " + "; ".join(" -> ".join(c) for c in cycles)


def test_steps_share_vocabulary_through_lower_packages_not_through_each_other() -> None:
    """A step imports no other step: what two steps share (the dataset contract, the gate's
    policy, training) lives in data/, gate/, model/."""
    for path in (ROOT / "steps").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                named = [a.name for a in node.names] if node.module == "precast.steps" else []
                assert not named and not (node.module or "").startswith("precast.steps."), (
                    f"{path.name} imports a step: line {node.lineno}")


def test_the_wheel_lists_every_package_of_the_tree() -> None:
    """setuptools builds the wheel from pyproject's explicit package list: a package missing
    from it is absent from every non-editable install (Spark executors, Beam workers), while
    the editable install of development finds it anyway."""
    import tomllib

    pyproject = tomllib.loads((ROOT.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    in_tree = {".".join(("precast", *init.parent.relative_to(ROOT).parts))
               for init in ROOT.rglob("__init__.py")}
    missing = in_tree - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
