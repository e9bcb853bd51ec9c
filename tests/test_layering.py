"""The house rules of the package layout, checked on the source (runtime imports only).

``signing/`` imports nothing of the package; providers know no campaign, journal, pacing or
intake; the engine knows its collaborators only through their seams; nothing below the CLI
knows a terminal; and no two modules import each other, however indirectly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bulkmail

PACKAGE = Path(bulkmail.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Every bulkmail module ``path`` imports at run time (function bodies included)."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path)
    package = package if path.name == "__init__.py" else package.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bulkmail"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.startswith("bulkmail"):
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_signing_imports_nothing_else_from_bulkmail() -> None:
    for name, deps in GRAPH.items():
        if _under(name, "bulkmail.signing"):
            assert all(_under(d, "bulkmail.signing") for d in deps), (name, deps)


def test_providers_know_no_campaign_books_pacing_or_intake() -> None:
    forbidden = [
        f"bulkmail.{p}"
        for p in ("input", "books", "delivery", "pacing", "intake", "cli", "servers", "api")
    ]
    for name, deps in GRAPH.items():
        if _under(name, "bulkmail.providers"):
            bad = [d for d in deps if _under(d, *forbidden)]
            assert not bad, f"{name} imports {bad}"


def test_the_engine_knows_its_collaborators_only_through_their_seams() -> None:
    allowed = {
        "bulkmail.books.base",
        "bulkmail.intake.base",
        "bulkmail.pacing.base",
        "bulkmail.providers.base",
        "bulkmail.mail.message",
        "bulkmail.errors",
        "bulkmail.delivery.guards",
        "bulkmail.delivery.progress",
        "bulkmail.delivery.sender",
        "bulkmail.delivery._ledger",
    }
    deps = GRAPH["bulkmail.delivery.engine"]
    assert deps <= allowed, sorted(deps - allowed)
    # the engine's outcome side (its own module) knows the books and intake seams only
    ledger = {"bulkmail.books.base", "bulkmail.intake.base", "bulkmail.errors"}
    assert GRAPH["bulkmail.delivery._ledger"] <= ledger
    assert "bulkmail.input.campaign" not in GRAPH["bulkmail.delivery.sender"]


def test_nothing_below_the_cli_knows_a_terminal() -> None:
    for name, path in MODULES.items():
        if _under(name, "bulkmail.cli") or name == "bulkmail.__main__":
            continue
        assert not _under_any(GRAPH[name], "bulkmail.cli"), name
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                module = node.module if isinstance(node, ast.ImportFrom) else None
                assert "rich" not in [*(n.split(".")[0] for n in names), module], name


def _under_any(deps: set[str], prefix: str) -> bool:
    return any(_under(d, prefix) for d in deps)


def test_no_import_circles() -> None:
    # A package's __init__ importing its own children is how packages work, not a circle.
    def edges(name: str) -> set[str]:
        return {d for d in GRAPH[name] if d in GRAPH and not _under(name, d)}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(edges(name)):
            if state.get(dep) == 1:
                circle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_the_graph_sees_real_imports() -> None:
    # The checks above are only as good as the graph: spot-check known edges.
    assert "bulkmail.books.base" in GRAPH["bulkmail.delivery.engine"]
    assert "bulkmail.providers.registry" in GRAPH["bulkmail.api"]
    assert "bulkmail.signing.sigv4" in GRAPH["bulkmail.signing"]
