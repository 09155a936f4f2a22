"""README.md and docs/*.md against the code: every command-line flag they name exists (on the
`mrdistill` subcommand or benchmark script it is given to), every config key in a `--set` example
or a YAML snippet is a key of the config it is given to, and every module path they cite
(`mrdistill/...py`, `mrdistill.a.b`) exists. A planted wrong flag, key and path fail the check."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import types
import typing
from functools import cache
from pathlib import Path

import pytest
import yaml

from mrdistill.cli.main import build_parser
from mrdistill.config import RunConfig, StageConfig
from mrdistill.study.config import StudyConfig
from mrdistill.study.front_config import FrontConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Flags of other programs that the docs show next to ours (torchrun, pip, tensorboard, mkdocs, pytest).
FOREIGN_FLAGS = {"--nproc_per_node", "--no-deps", "--no-binary", "--logdir", "--strict", "--quiet",
                 "--upgrade"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
SET = re.compile(r"--set\s+['\"]?([A-Za-z_][\w.]*)=")
MODULE_PATH = re.compile(r"(?<![\w/.])mrdistill/[\w/]+\.py\b")
DOTTED = re.compile(r"`(mrdistill(?:\.\w+)+)")
FROM_IMPORT = re.compile(r"^from (mrdistill[\w.]*) import \(?([\w, ]+)", flags=re.M)
# Programs of others whose flags the docs show (their lines hold no mrdistill command).
FOREIGN_PROGRAMS = ("pip ", "python -m pip", "tensorboard ", "mkdocs ", "make ", "sbatch ")
PLACEHOLDER_KEYS = {"key", "KEY", "a.b", "data.KEY"}  # `--set key=value` in prose
COMMAND = re.compile(r"(?:mrdistill(?:\.cli\.main)?|\$\(which mrdistill\))\s+([a-z]+)\b")
SCRIPT = re.compile(r"benchmarks/(\w+)\.py\b")


@cache
def cli_flags() -> dict[str, set[str]]:
    """`--flags` of every `mrdistill` subcommand."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for a in sp._actions for o in a.option_strings if o.startswith("--")}
            for name, sp in sub.choices.items()}


@cache
def script_flags(name: str) -> set[str] | None:
    """`--flags` a benchmark script declares (read from its source: running it would be slow)."""
    path = ROOT / "benchmarks" / f"{name}.py"
    if not path.is_file():
        return None
    return set(re.findall(r"add_argument\(\s*['\"](--[\w-]+)", path.read_text())) | {"--help"}


def key_problem(root: type, key: str) -> str | None:
    """Why `key` ("optim.lr", "distill.stages.0.epochs") is not a key of config class `root`."""
    tp: typing.Any = root
    for part in key.split("."):
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):  # e.g. `str | TeacherConfig`: its dataclass
            tp = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), typing.Any)
            origin = typing.get_origin(tp)
        if tp is typing.Any or origin is dict:
            return None  # free-form below here (model kwargs)
        if origin is list:
            if not part.isdigit():
                return f"{key}: {part!r} should index a list"
            tp = typing.get_args(tp)[0]
            continue
        if not dataclasses.is_dataclass(tp):
            return f"{key}: {part!r} is below a plain value"
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return f"{key}: no key {part!r} in {tp.__name__}"
        tp = hints[part]
    return None


def yaml_keys(node: typing.Any, prefix: str = "") -> list[str]:
    """The key paths of a YAML mapping (leaves and inner keys), lists indexed."""
    if isinstance(node, dict):
        return [k for key, value in node.items()
                for k in [f"{prefix}{key}", *yaml_keys(value, f"{prefix}{key}.")]]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in yaml_keys(value, f"{prefix}{i}.")]
    return []


def commands(text: str) -> list[str]:
    """Command lines: the lines of fenced blocks (backslash continuations joined) and inline code."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S).replace("\n", " ")
    return lines + re.findall(r"`([^`]+)`", prose)


def flag_problems(line: str) -> list[str]:
    """Flags of `line` that its program does not have."""
    problems = []
    cmd, script = COMMAND.search(line), SCRIPT.search(line)
    if not (cmd or script) and line.strip().startswith(FOREIGN_PROGRAMS):
        return []
    start = cmd.end() if cmd else script.end() if script else 0
    if cmd and cmd.group(1) in cli_flags():
        known = cli_flags()[cmd.group(1)]
    elif script and script_flags(script.group(1)) is not None:
        known = script_flags(script.group(1))
    else:  # a flag named in prose: some command or script must have it
        known = set().union(*cli_flags().values(), *(script_flags(p.stem) or set()
                                                    for p in (ROOT / "benchmarks").glob("*.py")))
    for flag in FLAG.findall(line[start:]):
        if flag not in known and flag not in FOREIGN_FLAGS:
            problems.append(f"{flag} (in `{line.strip()[:80]}`)")
    wrapper = line.strip().startswith(FOREIGN_PROGRAMS)  # e.g. sbatch ... --wrap "mrdistill ..."
    for flag in FLAG.findall(line[:start]):
        if flag not in FOREIGN_FLAGS and not wrapper:
            problems.append(f"{flag} before the command (in `{line.strip()[:80]}`)")
    return problems


def set_problems(line: str) -> list[str]:
    """`--set` keys of `line` that its config does not have (a study's keys for `mrdistill study`)."""
    cmd = COMMAND.search(line)
    if cmd and cmd.group(1) == "benchmark":  # its --set sets an argument of the preceding --model
        return []
    if cmd and cmd.group(1) in ("predict", "evaluate") and "--model" in line:  # a foreign model's arguments
        return []
    roots = [StudyConfig] if cmd and cmd.group(1) == "study" else [RunConfig, StudyConfig]
    return [problem for key in SET.findall(line) if key not in PLACEHOLDER_KEYS
            if (problem := key_problem(roots[0], key)) and all(key_problem(r, key) for r in roots)]


def yaml_problems(text: str) -> list[str]:
    """Keys of ```yaml snippets that no config has (a run, a study, or one distillation stage)."""
    problems = []
    for block in re.findall(r"```ya?ml\n(.*?)```", text, flags=re.S):
        data = yaml.safe_load(block)
        for key in yaml_keys(data if isinstance(data, dict) else {}):
            if all(key_problem(root, key) for root in (RunConfig, StudyConfig, FrontConfig, StageConfig)):
                problems.append(f"YAML key {key}")
    return problems


def path_problems(text: str) -> list[str]:
    """Cited module paths and dotted names that do not exist."""
    problems = [f"{p} does not exist" for p in MODULE_PATH.findall(text) if not (ROOT / p).is_file()]
    imported = [f"{module}.{name.strip()}" for module, names in FROM_IMPORT.findall(text)
                for name in names.split(",") if name.strip()]
    for dotted in sorted(set(DOTTED.findall(text)) | set(imported)):
        if not resolves(dotted):
            problems.append(f"{dotted} does not resolve")
    return problems


def resolves(dotted: str) -> bool:
    """`mrdistill.a.b.c` is a module, or an attribute chain of the longest importable module."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def problems_in(text: str) -> list[str]:
    """Everything in one document that disagrees with the code."""
    found = yaml_problems(text) + path_problems(text)
    for line in commands(text):
        found += flag_problems(line) + set_problems(line)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_what_exists(doc: Path) -> None:
    assert problems_in(doc.read_text()) == []


def test_a_planted_wrong_claim_fails(tmp_path: Path) -> None:
    doc = tmp_path / "planted.md"
    doc.write_text(
        "Train with\n\n```bash\nmrdistill train --config configs/kdmri_teacher.yaml --no-such-flag \\\n"
        "    --set optim.no_such_key=1\n```\n\nthen `mrdistill export --set x=1` (see "
        "`mrdistill/no_such_module.py`, `mrdistill.models.no_such_thing`).\n\n"
        "```python\nfrom mrdistill.models import build_model, no_such_builder\n```\n\n"
        "```yaml\noptim: {lr: 0.001, learning_speed: 2}\n```\n")
    found = problems_in(doc.read_text())
    assert any(p.startswith("--no-such-flag") for p in found)
    assert any("optim.no_such_key: no key 'no_such_key'" in p for p in found)
    assert any(p.startswith("--set (in `mrdistill export") for p in found)  # export takes no --set
    assert "mrdistill/no_such_module.py does not exist" in found
    assert "mrdistill.models.no_such_thing does not resolve" in found
    assert "YAML key optim.learning_speed" in found
    assert "mrdistill.models.no_such_builder does not resolve" in found
    # The same text with real names passes.
    doc.write_text("```bash\nmrdistill train --config c.yaml --set optim.lr=0.1 --set "
                   "distill.stages.0.epochs=2 --set model.kwargs.anything=1\n```\n"
                   "`mrdistill/models/contract.py`, `mrdistill.models.contract.declared`\n")
    assert problems_in(doc.read_text()) == []
