"""The package's imports flow one way and form no cycle (read with ast, not imported).

Every import counts: at module level, inside a function (imported on first use) and under
TYPE_CHECKING, since each is a dependency a reader has to follow. A cycle makes two
modules one unit that cannot be read, tested or moved apart; an import against the flow
lets a lower layer lean on a shell (the engine on the daemon, say), which is how a
library grows into its front ends.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestratord"

# The layers, lowest first: a module may import its own layer and those before it. The
# first name below orchestratord/ places a module (README.md, "Layout").
LAYERS: list[set[str]] = [
    {"core"},                      # errors, statuses, paths, processes, redaction
    {"language"},                  # files -> model -> graph -> loader; skill registry
    {"store"},                     # the SQLite state
    {"engine"},                    # running a definition against the store
    # Reports and observability read the store and the engine's events, nothing of the
    # skills; they come before skills so that a bundled skill reports on a run through
    # the one report model (internal-comms' status report).
    {"observability", "reports"},
    {"skills"},                    # the SDK of python skills, the bundled skills
    {"integrations"},              # services the daemon talks to (AIDB)
    # The shells around the library: the daemon, the CLI, the MCP server, the Python API
    # and the example model server (a program of its own).
    {"daemon", "cli", "mcp", "orchestrator", "example_model"},
    {"__init__"},                  # the curated public API, over everything
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The package's modules that module `name` imports, relative imports resolved."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from . import x` imports the module x
                target = f"{base}.{alias.name}"
                found.add(target if target in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def layer(name: str) -> int:
    parts = name.split(".")
    return RANK["__init__" if len(parts) == 1 else parts[1].removesuffix("__main__")]


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in sorted(GRAPH[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component: list[str] = []
            while (member := stack.pop()) != node:
                component.append(member)
            if component:
                found.append(sorted([node, *component]))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(n for n in MODULES if n != "orchestratord" and n.split(".")[1] not in RANK)
    assert unplaced == [], f"place these in LAYERS where they sit in the flow: {unplaced}"


def test_imports_follow_the_flow() -> None:
    against = sorted(f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps
                     if layer(d) > layer(m))
    flow = " -> ".join("/".join(sorted(names)) for names in LAYERS)
    assert against == [], "\n".join([f"imports against the flow {flow}:", *against])


def test_no_import_cycles() -> None:
    assert cycles() == [], "modules that import each other (break with a protocol or a leaf)"


def test_the_walk_sees_imports_at_every_depth() -> None:
    # The walk must find a function-level import and a `from . import module`, or the
    # tests above could pass by seeing nothing.
    assert "orchestratord.cli.aidb" in GRAPH["orchestratord.cli.main"]
    assert "orchestratord.engine.runners.systemctl" in GRAPH[
        "orchestratord.skills.bundled.health_monitoring.actions"]


def test_what_a_module_shares_has_a_public_name() -> None:
    """Regression: cli/main.py, cli/skills.py and mcp/command.py imported _socket,
    _remote, _with_engine and the like from cli/common.py and cli/embedded.py; a name
    other modules use is no longer private."""
    shared = ("orchestratord.cli.common", "orchestratord.cli.embedded")
    private = []
    for name, path in MODULES.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package[:len(package) - node.level + 1]
                                + ([node.module] if node.module else []))
                private += [f"{name} imports {alias.name} from {base}" for alias in node.names
                            if base in shared and alias.name.startswith("_")]
    assert private == []
