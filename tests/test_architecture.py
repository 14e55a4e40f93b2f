"""The map of the rooms (docs/architecture.md) holds: which package may import which, no cycle.

Read from the source with `ast`, every import counted, those inside functions too (the four
that create_app makes lazily included): a domain package that starts to reach into one it
may not call, or two modules that import each other, fail here before review.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"

# The arrows of docs/architecture.md, "Map of the rooms": each room and the rooms of `app`
# it may import ("services" is app/services/__init__.py: DbSession and the service errors).
BELOW_SERVICES = {"models", "services", "infra", "emails", "jobs"}
ALLOWED = {
    "models": set(),
    "infra": {"models"},
    "emails": set(),
    "jobs": {"services"},
    "extensions": {"models"},
    "services": set(),
    "services.transports": {"emails"},
    "services.organization": {"models", "services"},
    "services.audience": BELOW_SERVICES | {"services.transports"},
    "services.campaigns": BELOW_SERVICES | {"services.transports"},
    "services.stats": BELOW_SERVICES | {"services.organization"},
    "services.sending": BELOW_SERVICES
    | {
        "services.actions",
        "services.audience",
        "services.campaigns",
        "services.organization",
        "services.stats",
        "services.transports",
    },
    "services.tracking": BELOW_SERVICES
    | {
        "extensions",
        "services.audience",
        "services.campaigns",
        "services.sending",
        "services.stats",
    },
    "services.actions": BELOW_SERVICES
    | {"services.audience", "services.organization", "services.transports"},
    "demo": {
        "models",
        "services",
        "services.actions",
        "services.audience",
        "services.campaigns",
        "services.organization",
    },
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in APP.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[:2] == ["app", "services"]:
        return "services" if len(parts) == 2 else f"services.{parts[2]}"
    return parts[1] if len(parts) > 1 else "app"


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (imports for type checking only)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                continue
            pending.append(child)
    return nodes


def _imports(module: str) -> set[str]:
    """Every module of `app` (or other top-level package) that `module` imports."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in MODULES else base)
    return targets


GRAPH = {
    module: {t for t in _imports(module) if t in MODULES and t != module} for module in MODULES
}


def test_no_module_of_app_imports_the_workers():
    offenders = [m for m in MODULES if any(t.startswith("workers") for t in _imports(m))]
    assert offenders == []


def test_no_module_sits_flat_in_app_services():
    flat = [p.name for p in (APP / "services").glob("*.py") if p.name != "__init__.py"]
    assert flat == []


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_what_the_map_allows(room):
    reached: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        if _room(module) != room:
            continue
        for target in targets:
            other = _room(target)
            if other != room and other != "app":
                reached[other].add(f"{module} -> {target}")
    forbidden = {other: sorted(how) for other, how in reached.items() if other not in ALLOWED[room]}
    assert forbidden == {}, f"{room} reaches outside its map (docs/architecture.md)"


def test_there_is_no_import_cycle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []
