"""Every shipped config in configs/ runs end to end with its `smoke` preset, so a config can never be
broken unnoticed (new files are picked up by the glob).

A distill config whose `distill.teacher` names another config's run (`runs/<name>/...`) first gets
that teacher, trained here with its own smoke preset; configs on fastMRI data read a tiny folder in
fastMRI's layout; a study config runs its first method at its first acceleration.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import write_fastmri_folder  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
DOCS = {p.stem: yaml.safe_load(p.read_text()) for p in CONFIGS}
BY_RUN_NAME = {doc.get("name", stem): stem for stem, doc in DOCS.items()}
_DONE: dict[str, Path] = {}  # config stem -> the output folder its smoke run wrote (per process)


def command(doc: dict[str, Any]) -> str:
    if "methods" in doc or "students" in doc:  # the SFT study or a quality-speed front
        return "study"
    return "distill" if doc.get("distill") else "train"


def teacher_of(doc: dict[str, Any]) -> tuple[str, Path] | None:
    """(stem of the config that trains the teacher, checkpoint path below the output folder)."""
    path = (doc.get("distill") or {}).get("teacher")
    if isinstance(path, dict):  # a foreign-teacher mapping: its weights file
        path = path.get("weights")
    if not isinstance(path, str) or not path.startswith("runs/"):
        return None
    parts = Path(path).parts
    assert parts[1] in BY_RUN_NAME, f"distill.teacher {path}: no config in configs/ is named {parts[1]}"
    return BY_RUN_NAME[parts[1]], Path(*parts[1:])


@pytest.fixture(scope="session")
def fastmri_root(tmp_path_factory) -> Path:
    """Tiny fastMRI-layout folders for both challenges (2 + 2 volumes of 2 slices)."""
    root = tmp_path_factory.mktemp("fastmri")
    for challenge, coils in (("singlecoil", 0), ("multicoil", 4)):
        for split in ("train", "val"):
            write_fastmri_folder(root / f"{challenge}_{split}", 2, slices=2, coils=coils)
    return root


def smoke(stem: str, out: Path, fastmri: Path, capsys) -> str:
    """Run config `stem` with `--preset smoke` into `out` (its teacher first); return stdout."""
    doc = DOCS[stem]
    args = [command(doc), "--config", CONFIGS[list(DOCS).index(stem)], "--preset", "smoke",
            "--no-progress", "--set", f"out_dir={out}"]
    if (doc.get("data") or {}).get("dataset") == "fastmri":
        args += ["--set", f"data.path={fastmri}"]
    teacher = teacher_of(doc)
    if teacher is not None:
        if teacher[0] not in _DONE:
            smoke(teacher[0], out, fastmri, capsys)
        key = "distill.teacher.weights" if isinstance(doc["distill"]["teacher"], dict) else "distill.teacher"
        args += ["--set", f"{key}={_DONE[teacher[0]] / teacher[1]}"]
    if "methods" in doc:
        first_acc = (doc.get("accelerations") or [4])[0]
        args += ["--set", f"only=[{doc['methods'][0]['label']}]", "--set", f"accelerations=[{first_acc}]"]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, f"{stem} --preset smoke failed: {err.strip()}"
    _DONE[stem] = out
    return stdout


@pytest.mark.parametrize("stem", list(DOCS))
def test_config_smoke_preset_runs(stem, tmp_path_factory, fastmri_root, capsys):
    assert "smoke" in (DOCS[stem].get("presets") or {}) or command(DOCS[stem]) == "study", \
        f"configs/{stem}.yaml has no smoke preset"
    stdout = smoke(stem, tmp_path_factory.mktemp(stem), fastmri_root, capsys)
    assert "|" in stdout  # every command ends with a Markdown table
