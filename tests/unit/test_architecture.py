"""The package's shape is checked, not hoped for: import direction, no cycles, no private reach-ins.

Every ``import`` in the source tree counts, those inside functions included (a lazy
import is still a dependency). The layer table is the contract the README's
"Layout" section describes: cli -> pipeline/workflow/ops -> spec -> cutting/backends.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

# Where each importable name lives on disk (pyproject's package-dir).
ROOTS = {
    "qhybrid": REPO / "src" / "qhybrid",
    "qhybrid.scenarios": REPO / "scenarios",
    "qhybrid_chaos": REPO / "chaos",
}
# What each part of qhybrid may import from the others (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "atomic": set(),
    "provenance": set(),
    "cost": {"errors"},
    "scenarios": set(),
    "cutting": {"errors"},
    "spec": {"errors", "cutting", "scenarios"},
    # The QuantumJob CRD is generated from the run's own flags, modes and policies.
    "blueprint": {"errors", "atomic", "spec", "cutting", "scenarios", "cost"},
    "gateway": {"errors", "cutting", "blueprint"},
    "backends": {"errors", "provenance", "cutting", "gateway"},
    "cache": {"errors", "provenance", "cutting"},
    "pipeline": {
        "errors",
        "atomic",
        "provenance",
        "cutting",
        "spec",
        "backends",
        "cache",
        "scenarios",
        "cost",
    },
    # Experiment tracking (MLflow) and the object store read finished runs and the bucket layout.
    "tracking": {"errors", "atomic", "pipeline", "blueprint"},
    "workflow": {"errors", "atomic", "cutting", "spec", "pipeline", "blueprint"},
    "operator": {
        "errors",
        "atomic",
        "cutting",
        "spec",
        "backends",
        "pipeline",
        "workflow",
        "blueprint",
        "ops",
    },
    "ops": {"errors", "atomic", "spec", "pipeline", "blueprint", "chaos"},
    "cli": {
        "errors",
        "atomic",
        "spec",
        "cutting",
        "backends",
        "cache",
        "operator",
        "pipeline",
        "workflow",
        "ops",
        "blueprint",
        "gateway",
        "cost",
        "tracking",
    },
    "chaos": {"errors", "atomic", "spec", "backends", "pipeline", "workflow", "blueprint", "gateway", "cli"},
    "__init__": set(),
    "__main__": {"cli"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            if package == "qhybrid_chaos" and "experiments" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """Yield (imported module, names taken from it, line) for every import in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            yield base, [a.name for a in node.names], node.lineno


def internal(target: str, names: list[str]) -> list[str]:
    """Return the project modules an import statement loads (a ``from pkg import mod`` counts mod)."""
    out = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    if target in MODULES and (not names or len(out) < len(names)):
        out.append(target)
    return out


def part(module: str) -> str:
    if module.startswith("qhybrid_chaos"):
        return "chaos"
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, names, _ in imports(name, path):
            edges[name].update(t for t in internal(target, names) if t != name)
    return edges


def test_no_import_cycles():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == [], f"import cycles: {cycles}"


def test_imports_point_down_the_layers():
    wrong = []
    for name, targets in graph().items():
        source = part(name)
        for target in targets:
            if part(target) != source and part(target) not in ALLOWED[source] and part(target) != "__init__":
                wrong.append(f"{name} -> {target}")
    assert wrong == [], (
        "imports against the layer table (tests/unit/test_architecture.py ALLOWED):\n"
        + "\n".join(sorted(wrong))
    )


def test_no_module_imports_another_modules_private_names():
    reached = []
    for name, path in MODULES.items():
        for target, names, line in imports(name, path):
            if not (target.startswith("qhybrid") and target in MODULES):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
            if private:
                reached.append(f"{name}:{line} takes {private} from {target}")
    assert reached == []


@pytest.mark.parametrize("folder", ["backends", "cutting", "pipeline", "workflow", "spec.py"])
def test_settings_travel_as_arguments_not_through_the_environment(folder):
    # The environment is read once, at the edge (the CLI's envvar options, a pod's entrypoint).
    root = ROOTS["qhybrid"] / folder
    for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "os.environ" not in text.replace("os.environ[_SERIAL_ENV]", "") or path.name == "exact.py", (
            path
        )


def test_source_files_stay_small():
    too_long = {
        str(path.relative_to(REPO)): n
        for path in MODULES.values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert too_long == {}


def test_the_checks_see_a_planted_cycle_and_a_private_import(tmp_path, monkeypatch):
    # Given two throwaway modules that import each other, one of them a private name,
    package = tmp_path / "qhybrid"
    (package / "cutting").mkdir(parents=True)
    (package / "cutting" / "a.py").write_text("from qhybrid.pipeline.b import _hidden\n")
    (package / "pipeline").mkdir()
    (package / "pipeline" / "b.py").write_text("import qhybrid.cutting.a\n_hidden = 1\n")
    monkeypatch.setitem(ROOTS, "qhybrid", package)
    monkeypatch.setattr(f"{__name__}.MODULES", modules())
    # then each check fails.
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match="qhybrid.cutting.a -> qhybrid.pipeline.b"):
        test_imports_point_down_the_layers()
    with pytest.raises(AssertionError, match="_hidden"):
        test_no_module_imports_another_modules_private_names()
