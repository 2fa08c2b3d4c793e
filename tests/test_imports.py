"""The package's import graph, read from the source (function-level imports included): no circle,
and the environment never imports the agent."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sr3_env", "sr3_agent")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere in its body (``from a import b`` counts ``a.b``
    when ``b`` is a module, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in known:
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) - {name} for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def without_package_inits(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without edges into a package's ``__init__`` from its own modules: ``from sr3_env import
    X`` inside sr3_env names the package's public API, which Python loads before any of its modules."""
    return {name: {t for t in targets if not (t in PACKAGES and name.startswith(t + "."))}
            for name, targets in edges.items()}


def test_the_walker_finds_a_circle_and_function_level_imports(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import sr3_agent.b\n")
    b.write_text("def f():\n    from sr3_agent.a import g\n")
    known = {"sr3_agent.a", "sr3_agent.b"}
    edges = {"sr3_agent.a": imports_of(a, known), "sr3_agent.b": imports_of(b, known)}
    assert edges == {"sr3_agent.a": {"sr3_agent.b"}, "sr3_agent.b": {"sr3_agent.a"}}
    assert circles(edges) == [["sr3_agent.a", "sr3_agent.b"]]


def test_the_package_has_no_import_circle():
    assert circles(without_package_inits(graph())) == []


def test_the_environment_never_imports_the_agent():
    edges = graph()
    assert {name: sorted(t for t in targets if t.startswith("sr3_agent"))
            for name, targets in edges.items() if name.startswith("sr3_env") and
            any(t.startswith("sr3_agent") for t in targets)} == {}
    assert len(edges) > 40  # the walker saw the package


def test_the_architecture_page_names_every_module_and_only_modules_that_exist():
    """docs/architecture.md matches the tree: every module file of both packages is named there (a
    subpackage's ``__init__.py`` only where it holds more than a docstring), and every path it names exists."""
    import re

    named = set(re.findall(r"`((?:sr3_env|sr3_agent)/[\w/]+\.py)`", (ROOT / "docs" / "architecture.md").read_text()))
    files = {path.relative_to(ROOT).as_posix() for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    bare_inits = {name for name in files if name.endswith("/__init__.py") and name.count("/") > 1
                  and not ast.parse((ROOT / name).read_text()).body[1:]}  # a docstring and nothing else
    assert sorted(files - bare_inits - named) == []  # modules the page does not name: add a line for each
    assert sorted(named - files) == []  # paths the page names that do not exist
