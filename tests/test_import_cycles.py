"""No module under study/ imports another in a circle, read from the source (AST): every import
statement counts, at module level, under `if TYPE_CHECKING:` and inside functions alike.

`from pkg import name` is an edge to the module `pkg.name` when that is a module, else to `pkg`
(its `__init__`); a package's `__init__` importing its own submodules is not a circle, but a
submodule importing its package's `__init__` back is.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str = "study") -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` (packages by their __init__)."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that module `name` (at `path`) imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_import_graph_is_read_from_the_source(tmp_path):
    graph = _graph()
    assert "study.core.mi.critic" in graph["study.core.mi.penalty"]  # a submodule
    assert "study.core.mi" in graph["study.training.loop"]  # a package's __init__
    assert (
        "study.core.modularity" in graph["study.training.evaluation"]
    )  # `from study.core import …`
    assert {
        "study.core.mi.critic",
        "study.core.mi.estimators",
        "study.core.mi.penalty",
        "study.core.mi.measure",
    } <= graph["study.core.mi"]
    assert "study.service.runner" in graph["study.service.worker"]  # inside a function
    # under TYPE_CHECKING, and relative imports
    source = tmp_path / "a.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from pkg.b import X\nfrom . import c\nfrom .d import Y\n"
    )
    modules = {name: tmp_path / "x.py" for name in ("pkg.a", "pkg.b", "pkg.c", "pkg.d")}
    assert _imports("pkg.a", source, modules) == {"pkg.b", "pkg.c", "pkg.d"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_study_imports_another_in_a_circle():
    graph = _graph()
    circles = _cycles(graph)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)
