"""`folder_lock`: a folder is locked while a command writes it; another process is refused with
the holder's PID, a dead holder's lock is free, and one process shares its own lock."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrdistill.atomic import atomic_write_text
from mrdistill.errors import MrdistillError
from mrdistill.folder_lock import release_locks
from mrdistill.rundir import claim, open_output


def _old_run(path: Path) -> Path:
    with claim(path, command="test") as out:
        atomic_write_text(out.path / "best.pt", "old")
    return path


def _holder(run: Path) -> subprocess.Popen:
    """A process that claims `run` and keeps writing it (it waits) until killed."""
    script = ("import sys, time\nfrom mrdistill.rundir import open_output\n"
              f"open_output({str(run)!r}, resume=True, command='test')\nprint('held', flush=True)\ntime.sleep(600)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_folder_is_locked_while_a_command_writes_it(tmp_path):
    run = _old_run(tmp_path / "run")
    proc = _holder(run)
    try:
        for kwargs in ({"resume": True}, {"overwrite": True}, {}):
            with pytest.raises(MrdistillError, match=rf"run is being written by another mrdistill process "
                                                     rf"\(PID {proc.pid}\)"):
                open_output(run, **kwargs)
    finally:
        proc.kill()
        proc.wait()
    assert (run / "best.pt").read_text() == "old"
    with claim(run, resume=True) as out:  # the dead holder's lock is taken over
        assert out.reused
        open_output(run, resume=True)  # this process holds it: shared, not refused
    open_output(run, resume=True).commit()  # kept until released (the CLI does at its end)
    script = f"from mrdistill.rundir import open_output\nopen_output({str(run)!r}, resume=True)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    other = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert other.returncode != 0 and f"(PID {os.getpid()})" in other.stderr
    release_locks()
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == 0
