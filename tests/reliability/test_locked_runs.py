"""A run folder is locked while a command writes it: a second `train` into it (fresh, `--resume`
or `--overwrite`) stops with one line naming the writer's process id and changes nothing; once
that process is gone (killed: its lock dies with it) the next command takes the folder over. A
folder holding only the marker, as a run killed before its first write leaves it, counts as empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import run_cli

from mrdistill.rundir import MARKER

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAIN = ["train", "--config", CONFIGS / "kdmri_teacher.yaml", "--preset", "smoke", "--no-progress",
         "--set", "data.image_size=32", "--set", "model.kwargs.cascades=1"]


def _writer(run: Path) -> subprocess.Popen:
    """Another mrdistill process that holds `run` (claimed for resuming) until it is killed."""
    script = ("import time\nfrom mrdistill.rundir import open_output\n"
              f"open_output({str(run)!r}, resume=True, command='train')\nprint('held', flush=True)\n"
              "time.sleep(600)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text('{"created_by": "mrdistill"}\n')  # a start that died before writing
    assert run_cli([*TRAIN, "--out", run], capsys)[0] == 0  # marker only: counts as empty
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    writer = _writer(run)
    try:
        for flag in ([], ["--resume"], ["--overwrite"]):
            code, _, err = run_cli([*TRAIN, "--out", run, *flag], capsys)
            assert code == 2 and err.count("\n") == 1, err
            assert f"run is being written by another mrdistill process (PID {writer.pid})" in err
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    finally:
        writer.kill()
        writer.wait()
    code, _, err = run_cli([*TRAIN, "--out", run, "--overwrite"], capsys)
    assert code == 0, err
    assert (run / "checkpoints" / "best.pt").is_file()
