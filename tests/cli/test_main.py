"""The program entry (`cli.main`), the parser (`cli.parsers`) and `list` (`cli.listing`): help,
`list` and argument errors answer without torch; process-wide settings only for training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import mrdistill.accel as accel
import mrdistill.cli.main as cli_main
from mrdistill.cli.listing import REGISTRIES, registered_names
from mrdistill.distill import list_kd
from mrdistill.errors import MrdistillNote
from mrdistill.models import list_models

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "matplotlib", "h5py", "scipy", "onnx", "onnxruntime", "nibabel", "tqdm")

# Runs each argv through main in one fresh process, then reports the exit codes and which heavy
# modules had been imported by then.
PROBE = """
import json, sys
from mrdistill.cli.main import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as exc:  # --help
        codes.append(exc.code)
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def _probe(argvs: list[list[str]]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs), json.dumps(HEAVY)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_list_and_argument_errors_import_no_torch() -> None:
    argvs = [["--help"], ["list"], ["no-such-command"], ["predict", "--bogus", "x"], ["train"],
             ["benchmark", "--set", "a=1", "--out", "o"], ["evaluate", "--split", "nope"]]
    argvs += [[command, "--help"] for command in cli_main.COMMAND_MODULES]
    result = _probe(argvs)
    assert result["heavy"] == []
    assert result["codes"] == [0, 0, 2, 2, 2, 2, 2] + [0] * len(cli_main.COMMAND_MODULES)


def test_a_command_that_runs_imports_its_module() -> None:
    # the same probe sees torch once a command does its work: the check above can fail
    result = _probe([["export", "missing.pt", "--format", "onnx", "--out", "x.onnx"]])
    assert result["codes"] == [2] and "torch" in result["heavy"]


def test_list_reads_the_same_names_as_the_registries() -> None:
    assert registered_names(*REGISTRIES["models"]) == list_models()
    assert registered_names(*REGISTRIES["kd"]) == list_kd()


def test_importing_main_changes_no_process_setting() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, mrdistill.cli.main; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "None"


def test_process_settings_only_in_the_program_and_only_for_training(monkeypatch, tmp_path, capsys) -> None:
    calls: list[int] = []
    monkeypatch.setattr(accel, "retain_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(sys, "argv", ["mrdistill", "list"])
    assert cli_main.entry() == 0 and calls == [] and "OMP_WAIT_POLICY" not in os.environ
    train = ["train", "--config", str(tmp_path / "missing.yaml")]
    assert cli_main.main(train) == 2 and calls == [] and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setattr(sys, "argv", ["mrdistill", *train])
    assert cli_main.entry() == 2 and calls == [1] and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's own setting wins
    assert cli_main.entry() == 2 and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "missing.yaml" in capsys.readouterr().err


def test_a_note_is_one_line() -> None:
    line = cli_main._one_line_warning(MrdistillNote("kernels off"), MrdistillNote, "elsewhere.py", 1)
    assert line == "mrdistill: note: kernels off\n"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.warn(MrdistillNote("x"))
    assert seen[0].category is MrdistillNote  # callers of the library can still filter notes
