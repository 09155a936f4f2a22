"""The package's dependency direction (DESIGN.md): no module imports a package above its own, and
module-level imports form no cycle. Imports under `if TYPE_CHECKING:` and inside functions (lazy
imports of heavy optional dependencies) are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mrdistill"
# Lower rank = lower layer. Top-level helper modules sit at the bottom; `demo` drives training.
RANK = {"errors": 0, "atomic": 0, "cache": 0, "device": 0, "machine": 0, "timelimit": 0, "rundir": 0,
        "folder_lock": 0,
        "physics": 2, "eval": 2, "config": 3, "data": 3, "models": 4, "accel": 5, "distill": 6,
        "selfsup": 6, "train": 7, "deploy": 8, "study": 8, "demo": 8, "cli": 9}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """mrdistill modules imported at module level (not under TYPE_CHECKING, not in functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("mrdistill"):
                found.add(sub.module)
                found.update(f"{sub.module}.{a.name}" for a in sub.names)
            elif isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names if a.name.startswith("mrdistill"))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in top_level_imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def layer(module: str) -> int:
    return RANK[module.split(".")[1]]


def test_no_upward_import() -> None:
    upward = [f"{a} -> {b}" for a, deps in graph().items() for b in deps
              if a != "mrdistill" and b != "mrdistill" and layer(b) > layer(a)]
    assert upward == []


def test_no_import_cycle() -> None:
    g = graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            if state.get(dep) == 1 and not node.startswith(dep + "."):  # a package's own __init__
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]) if dep in stack else dep)
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert cycles == []
