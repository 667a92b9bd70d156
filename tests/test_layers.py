"""The package's import graph: layers, no circles, self-contained related-results subpackages.

Every module of ``icl`` has a layer (CONTRIBUTING.md lists them). A module may import only
modules of a *strictly lower* layer, so the graph can have no circle; every import counts,
including those inside functions. A related-results subpackage (``icl/lsa/``,
``icl/classification/``, …) may import only the shared bottom modules and its own
modules. A new module must be given a place here before it can be imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "icl"

#: the layer of every module of the recall task (the paper), bottom to top
LAYERS: dict[str, int] = {
    "icl.validate": 0,
    "icl.kernels": 0,
    "icl.fastpath": 1,
    "icl.config": 1,
    "icl.rates": 1,
    "icl.constants": 1,
    "icl.comparison": 1,
    "icl.viz.style": 1,
    "icl.symbolic.toolkit": 1,
    "icl.task": 2,
    "icl.symbolic.bayes": 2,
    "icl.bayes": 3,
    "icl.losses": 3,
    "icl.architecture": 3,
    "icl.symbolic.construction": 3,
    "icl.construction": 4,
    "icl.closed_forms": 4,
    "icl.general_task": 4,
    "icl.softmax_construction": 5,
    "icl.model": 5,
    "icl.standard_transformer": 5,
    "icl.roles": 6,
    "icl.training": 7,
    "icl.families": 6,
    "icl.mechanism": 6,
    "icl.laws": 8,
    "icl.montecarlo": 8,
    "icl.dynamics": 8,
    "icl.finite": 8,
    "icl.shifts": 8,
    "icl.perf": 8,
    "icl.sweeps": 8,
    "icl.viz.task": 9,
    "icl.viz.bayes": 9,
    "icl.viz.construction": 9,
    "icl.viz.training": 9,
    "icl.viz.generalization": 9,
    "icl.viz.explorer": 9,
    "icl.viz.performance": 9,
    "icl.viz.questions": 9,
    "icl.viz.standard_transformer": 9,
    "icl.experiments": 9,
    "icl.viz.reproduction": 9,
    "icl.checks": 9,
    "icl.checks.task": 10,
    "icl.checks.generalization": 10,
    "icl.checks.reproduction": 10,
    "icl.checks.classification": 10,
    "icl.checks.bayes": 10,
    "icl.checks.construction": 10,
    "icl.checks.training": 10,
    "icl.checks.lsa": 10,
    "icl.checks.transformer": 10,
    "icl.checks.questions": 10,
    "icl.reproduce": 10,
    "icl.__main__": 11,
}
#: what a related-results subpackage may import from the rest of ``icl``
SHARED = {"icl.validate", "icl.config", "icl.rates", "icl.viz.style"}
#: folders that are subpackages of the recall task itself, not related results
RECALL_SUBPACKAGES = {"viz", "symbolic", "checks"}
#: the exercise checks of a related result's chapter, which compare with that result's package
def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every ``icl`` module that ``name`` imports (absolute or relative, at any depth)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = modules()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when it exists (and pkg
            # itself only for the names that are not submodules)
            subs = [f"{mod}.{a.name}" for a in node.names]
            targets = subs + ([mod] if any(t not in known for t in subs) else [])
        else:
            continue
        for t in targets:
            if t.startswith("icl") and t in known and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in modules().items()}


def related_subpackage(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) >= 2 and parts[1] not in RECALL_SUBPACKAGES and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return None


def test_every_module_has_a_place():
    missing = [
        n
        for n in modules()
        if n not in LAYERS
        and related_subpackage(n) is None
        and n not in {"icl", "icl.viz", "icl.symbolic"}
    ]
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


def test_no_upward_import():
    bad = []
    for name, deps in graph().items():
        if name not in LAYERS:
            continue
        for dep in deps:
            if dep in {"icl.viz", "icl.symbolic"}:
                continue  # namespace packages: their __init__ import nothing
            if related_subpackage(dep) and name == f"icl.checks.{related_subpackage(dep)}":
                continue  # the self-checks of a related result call its own references
            if related_subpackage(dep):
                bad.append(f"{name} imports the related-results module {dep}")
            elif LAYERS.get(dep, 99) >= LAYERS[name]:
                bad.append(f"{name} (layer {LAYERS[name]}) imports {dep} (layer {LAYERS.get(dep)})")
    assert not bad, "\n".join(bad)


def test_related_results_are_self_contained():
    bad = []
    for name, deps in graph().items():
        sub = related_subpackage(name)
        if sub is None:
            continue
        for dep in deps:
            if dep not in SHARED and related_subpackage(dep) != sub and dep != "icl.viz":
                bad.append(f"{name} imports {dep}; allowed: {sorted(SHARED)} and icl.{sub}.*")
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                cycle = stack[stack.index(m) :] + [m]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)


def test_the_checker_sees_circles_and_upward_imports(monkeypatch):
    """The checks above can fail: a planted upward import and a planted circle are reported."""
    real = graph()
    planted = {**real, "icl.task": real["icl.task"] | {"icl.model"}}
    monkeypatch.setitem(globals(), "graph", lambda: planted)
    with pytest.raises(AssertionError, match="icl.task .* imports icl.model"):
        test_no_upward_import()
    with pytest.raises(pytest.fail.Exception, match="import circle"):
        test_no_import_circle()


def test_namespace_inits_import_nothing():
    for name in ("icl.viz", "icl.symbolic"):
        path = modules()[name]
        assert not imports_of(name, path), f"{name}/__init__.py must stay empty of imports"
