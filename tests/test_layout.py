"""The package's layout holds: layers import downwards only, and no cycle hides inside a function.

Read from the source with :mod:`ast` (nothing is imported), so a violation fails here with the module and
line, before it shows up as a confusing import error or a design that quietly tangles again.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mcp_app"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the mcp_app module imported (or the external top-level package)
    line: int
    local: bool  # inside a function or method


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _resolve(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules one import statement names, absolute."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    yield prefix
    yield from (f"{prefix}.{alias.name}" for alias in node.names)


def _imports() -> list[Import]:
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        local_lines = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = set()
            for name in _resolve(module, node):
                if not name.startswith("mcp_app"):
                    targets.add(name.split(".")[0])
                    continue
                while name and name not in MODULES:
                    name = name.rpartition(".")[0]
                # A package's own __init__ and a module's parents are not edges of the design.
                if name and name != module and name != "mcp_app" and not module.startswith(name + "."):
                    targets.add(name)
            found.extend(Import(module, target, node.lineno, id(node) in local_lines) for target in targets)
    return found


IMPORTS = _imports()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_the_package_is_read() -> None:
    # Guards the guards: were the walk broken, every test below would pass on nothing.
    assert {"mcp_app.protocol.dispatcher", "mcp_app.transports.consumer", "mcp_app.providers.code"} <= set(MODULES)
    assert Import("mcp_app.transports.streamable_http", "mcp_app.protocol.jsonrpc", 0, False).target in {
        i.target for i in IMPORTS if i.module == "mcp_app.transports.streamable_http"
    }


def test_no_import_cycles_even_inside_functions() -> None:
    edges: dict[str, set[str]] = {}
    for item in IMPORTS:
        if item.target in MODULES:
            edges.setdefault(item.module, set()).add(item.target)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_import_inside_a_function_says_why() -> None:
    unexplained = []
    for item in IMPORTS:
        if not item.local:
            continue
        lines = MODULES[item.module].read_text().splitlines()
        # The comment may stand on the import's line, just above it, or above the block of imports it opens.
        window = lines[max(0, item.line - 4) : item.line + 1]
        if not any("#" in line for line in window):
            unexplained.append(f"{item.module}:{item.line} imports {item.target}")
    assert unexplained == []


def test_the_protocol_layer_knows_neither_django_nor_the_rest_of_the_app() -> None:
    wrong = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if i.module.startswith("mcp_app.protocol")
        and (
            i.target in {"django", "channels", "rest_framework"}
            or (i.target in MODULES and not i.target.startswith("mcp_app.protocol"))
        )
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # Providers sit below the protocol's dispatcher and the transports, and are handed what they need.
        ("mcp_app.providers", ("mcp_app.transports", "mcp_app.runtime", "mcp_app.protocol.dispatcher", "mcp_app.sessions")),
        # Rows only: the models call the providers' checks through hooks, never import them.
        ("mcp_app.models", ("mcp_app.providers", "mcp_app.transports", "mcp_app.runtime", "mcp_app.sessions")),
        ("mcp_app.conf", ("mcp_app.",)),
        ("mcp_app.sessions", ("mcp_app.transports", "mcp_app.runtime", "mcp_app.providers")),
        ("mcp_app.auth", ("mcp_app.transports", "mcp_app.runtime", "mcp_app.sessions")),
    ],
)
def test_layers_import_downwards(layer: str, forbidden: tuple[str, ...]) -> None:
    wrong = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if (i.module == layer or i.module.startswith(layer + ".")) and i.target.startswith(forbidden)
    ]
    assert wrong == []


def _method_names() -> set[str]:
    """Every MCP method name the dispatcher's source spells as a string: requests and notifications."""
    names = set()
    for path in (PACKAGE / "protocol").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "/" in node.value:
                head = node.value.split("/")[0]
                if head in {"tools", "resources", "prompts", "completion", "logging", "notifications", "server", "subscriptions"}:
                    names.add(node.value)
    return names | {"initialize", "ping"}


def test_no_transport_decides_by_mcp_method_name() -> None:
    names = _method_names()
    assert {"tools/call", "notifications/cancelled", "initialize"} <= names
    found = []
    for path in (PACKAGE / "transports").glob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings:
                found.append(f"{path.name}:{node.lineno} {node.value!r}")
    assert found == []
