"""`mrdistill study --jobs N` and `--executor submitit-local`: the same cells, tables and weights
as in one process; a killed driver rerun; a failing cell reported while the rest finish; cell
locks; bad input."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from mrdistill.errors import MrdistillError
from mrdistill.study.config import ExecutorConfig
from mrdistill.study.executors import check_executor
from mrdistill.study.locks import holder, is_locked, lock_path, try_lock, unlock

ROOT = Path(__file__).resolve().parents[2]
DCCNN = ROOT / "configs" / "front_dccnn.yaml"
ONE_STUDENT = ("students=[{name: dccnn, kwargs: {cascades: 2, convs: 2, channels: 2, in_channels: 1, "
               "residual: true}}]")
FAST = ["latency.backends=[eager]", "latency.repeats=1", "executor.threads=1", "executor.poll_seconds=0.2",
        # NCHW: see the note in docs/study.md on channels_last across processes
        "optim.channels_last=false", "teacher_optim.channels_last=false"]


def _args(out: Path, *sets: str, extra: tuple[str, ...] = ()) -> list[str]:
    return ["study", "--config", DCCNN, "--preset", "smoke", "--out", out, "--no-progress", *extra,
            *[a for s in (*FAST, *sets) for a in ("--set", s)]]


def _psnr_by_cell(out: Path) -> dict[str, str]:
    """cell folder name -> PSNR as written (full precision) in front_seeds.csv."""
    return {Path(r["cell"]).name: r["psnr"] for r in csv.DictReader(open(out / "front_seeds.csv"))
            if r["cell"]}


def _weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.parent.parent.name: torch.load(p, weights_only=True)["model"]
            for p in sorted((out / "cells").glob("*/checkpoints/best.pt"))}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The reference: one student, cells trained one after another in the test's process."""
    out = tmp_path_factory.mktemp("jobs1") / "front"
    from mrdistill.cli.main import main
    assert main([str(a) for a in _args(out, ONE_STUDENT)]) == 0
    return out


@pytest.mark.parametrize("extra", [("--jobs", "2"), ("--executor", "submitit-local", "--jobs", "2")])
def test_parallel_cells_give_the_same_front_and_weights(in_process, tmp_path, capsys, extra):
    if "submitit-local" in extra:
        pytest.importorskip("submitit")  # the optional `cluster` extra (`make test` installs it)
    out = tmp_path / "front"
    code, stdout, err = run_cli(_args(out, ONE_STUDENT, extra=extra), capsys)
    assert code == 0, err
    assert "jobs 2" in stdout and "cells trained 3, reused 0" in stdout
    assert _psnr_by_cell(out) == _psnr_by_cell(in_process)  # same cell hashes, same scores
    ref, got = _weights(in_process), _weights(out)
    assert sorted(ref) == sorted(got) and len(got) == 3
    for name in ref:
        assert all(torch.equal(ref[name][k], got[name][k]) for k in ref[name]), name
    logs = list((out / "jobs").glob("*.log")) if extra[0] == "--jobs" else \
        list((out / "jobs" / "submitit").glob("*_log.err"))
    assert len(logs) == 3


def test_a_failing_cell_is_reported_and_the_rest_finish(tmp_path, capsys):
    out = tmp_path / "front"
    students = ("students=[{name: failing_dccnn, kwargs: {cascades: 2, convs: 2, channels: 2, "
                "in_channels: 1, residual: true}}, {name: dccnn, kwargs: {cascades: 2, convs: 2, "
                "channels: 2, in_channels: 1, residual: true}}]")
    code, stdout, err = run_cli(_args(out, students, "plugins=[tests.study.failing_plugin]",
                                      extra=("--jobs", "2")), capsys)
    assert code == 1  # written, but not complete
    failed = [ln for ln in err.splitlines() if " failed: " in ln]
    assert len(failed) == 2, err  # its plain and its KD cell, one line each
    for line in failed:
        assert "failing_dccnn: this test model fails in every training step; log: " in line
        assert Path(line.split("; log: ")[1]).is_file()
    rows = list(csv.DictReader(open(out / "front.csv")))
    assert [(r["student"], r["variant"]) for r in rows] == [
        ("zero-filled", "zero-filled"), ("teacher", "teacher"), ("dccnn(convs=2,channels=2)", "plain"),
        ("dccnn(convs=2,channels=2)", "KD")]
    md = (out / "front.md").read_text()
    assert "cells trained 3, reused 0, failed or skipped 2" in md
    assert md.count("- missing cell failing_dccnn") == 2


def test_a_killed_driver_is_rerun_without_retraining(tmp_path, capsys):
    out = tmp_path / "front"
    two = ("students=[{name: dccnn, kwargs: {cascades: 2, convs: 2, channels: 2, in_channels: 1, "
           "residual: true}}, {name: dccnn, kwargs: {cascades: 2, convs: 3, channels: 2, "
           "in_channels: 1, residual: true}}]")
    args = [str(a) for a in _args(out, two, extra=("--jobs", "2"))]
    driver = subprocess.Popen([sys.executable, "-m", "mrdistill.cli.main", *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((out / "cells").glob("teacher-*/cell.json")) and time.monotonic() < deadline:
        assert driver.poll() is None
        time.sleep(0.2)
    while not list((out / "cells").glob(".*.lock")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the first students have started
    driver.kill()  # the driver only: its workers go on as orphans, holding their cells' locks
    driver.wait()
    before = {p: p.read_bytes() for p in (out / "cells").glob("*/cell.json")}
    assert before
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    after = {p: p.read_bytes() for p in (out / "cells").glob("*/cell.json")}
    assert len(after) == 5 and all(after[p] == b for p, b in before.items())  # none retrained
    assert "reused" in stdout and not list((out / "cells").glob(".*.lock"))


def test_cell_lock_is_exclusive_and_a_dead_holder_is_taken_over(tmp_path):
    run_dir = tmp_path / "cells" / "teacher-0123456789"
    assert try_lock(run_dir) and is_locked(run_dir)
    assert holder(run_dir)["pid"] == os.getpid()
    child = subprocess.run([sys.executable, "-c", "from pathlib import Path; import sys; "
                            "from mrdistill.study.locks import try_lock; "
                            f"sys.exit(0 if try_lock(Path({str(run_dir)!r})) else 3)"], cwd=ROOT)
    assert child.returncode == 3  # this (live) process holds it
    unlock(run_dir)
    assert not lock_path(run_dir).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    lock_path(run_dir).write_text(f'{{"host": "{os.uname().nodename}", "pid": {dead.stdout.strip()}}}')
    assert not is_locked(run_dir) and try_lock(run_dir)  # its holder is gone: taken over
    unlock(run_dir)


@pytest.mark.parametrize("extra, message", [
    (("--jobs", "0"), "--jobs must be at least 1, got 0"),
    (("--executor", "pbs"), "executor.kind: expected one of"),
    (("--set", "executor.partition=gpu"), "executor.partition is a Slurm option; it needs --executor slurm"),
])
def test_bad_executor_input(tmp_path, capsys, extra, message):
    code, _, err = run_cli(_args(tmp_path / "front", extra=extra), capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_slurm_without_submitit_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if the `cluster` extra were missing
    with pytest.raises(MrdistillError, match=r"pip install 'mrdistill\[cluster\]'"):
        check_executor(ExecutorConfig(kind="slurm", partition="gpu"))
    code, _, err = run_cli(_args(tmp_path / "front", extra=("--executor", "slurm", "--set",
                                                            "executor.partition=gpu")), capsys)
    assert code == 2 and "need submitit, the optional `cluster` extra" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
