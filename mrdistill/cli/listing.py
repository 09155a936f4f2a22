"""`mrdistill list`: the registered models and KD losses.

Read from the package's source (the `@register_model("name")` and `@register_kd("name")`
decorators) rather than by importing the models, so that the answer needs no torch and comes at
once; tests/cli/test_main.py checks it against `models.list_models()` and `distill.list_kd()`.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
REGISTRIES = {"models": ("models", "register_model"), "kd": ("distill", "register_kd")}


def registered_names(folder: str, decorator: str) -> list[str]:
    """Sorted names given as the literal first argument of `@decorator(...)` in mrdistill/<folder>/*.py."""
    names = set()
    for path in sorted((PACKAGE / folder).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Name) and dec.func.id == decorator
                        and dec.args and isinstance(dec.args[0], ast.Constant)):
                    names.add(str(dec.args[0].value))
    return sorted(names)


def run(args: argparse.Namespace) -> int:
    print("models:    " + ", ".join(registered_names(*REGISTRIES["models"])))
    print("KD losses: " + ", ".join(registered_names(*REGISTRIES["kd"])))
    return 0
