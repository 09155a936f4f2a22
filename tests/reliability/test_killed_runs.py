"""What a killed command leaves behind is dealt with by the next command in that folder: stale
temporaries of atomic writes are removed, a folder set aside by an uncommitted `--overwrite` is put
back; the user's own files, even ones named like temporaries, are never touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import write_fastmri_folder, write_nifti  # noqa: E402

from conftest import run_cli  # noqa: E402
from mrdistill.rundir import MARKER  # noqa: E402


def dead_pid() -> int:
    """The id of a process that has exited (the writer of a stale temporary)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_evaluate_into_its_folder_again_removes_what_a_killed_evaluate_left(tmp_path, capsys):
    val = write_fastmri_folder(tmp_path / "val", 1, slices=2, height=16, width=12, recon=(8, 8))
    (tmp_path / "pred").mkdir()
    with h5py.File(val / "file1000.h5") as f, h5py.File(tmp_path / "pred" / "file1000.h5", "w") as g:
        g["reconstruction"] = f["reconstruction_esc"][()]
    args = ["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred", "--metrics", "psnr",
            "--challenge", "singlecoil", "--no-progress", "--out", tmp_path / "ev"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    pid = dead_pid()
    stale = [tmp_path / "ev" / f".metrics.json.{pid}.0123abcd.tmp",
             tmp_path / "ev" / "figures" / f".file1000_slice0.png.{pid}.89abcdef.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    mine = [tmp_path / "ev" / ".metrics.json.tmp", tmp_path / "ev" / f".x.{os.getpid()}.0123abcd.tmp"]
    for path in mine:  # the user's name, and a write in progress (this process is alive)
        path.write_bytes(b"keep")
    assert run_cli(args, capsys)[0] == 0
    assert not any(p.exists() for p in stale) and all(p.read_bytes() == b"keep" for p in mine)


def test_prepare_after_a_killed_overwrite_gets_the_old_data_set_back_first(tmp_path, capsys):
    scan = write_nifti(tmp_path / "scans" / "a.nii.gz")
    out = tmp_path / "prepared"
    args = ["prepare", scan, "--out", out, "--size", "16", "--no-progress"]
    assert run_cli(args, capsys)[0] == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    # the state a prepare --overwrite killed half-way leaves: old set aside, a partial new folder
    aside = tmp_path / f".prepared.replaced-{dead_pid()}-0123abcd"
    os.replace(out, aside)
    out.mkdir()
    (out / MARKER).write_text("{}")
    (out / "half.npy").write_bytes(b"half")
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "already holds results" in err  # the old data set is back: nothing to redo
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "scans"]
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "scans"]


def test_the_restore_is_said_in_one_line(tmp_path):
    """As the user sees it (a real process, Python's own warning printer): the restored folder is
    one `mrdistill: warning:` line, the refusal one `mrdistill: error:` line, nothing else."""
    scan = write_nifti(tmp_path / "scans" / "a.nii.gz")
    out = tmp_path / "prepared"
    args = ["prepare", str(scan), "--out", str(out), "--size", "16", "--no-progress"]
    out.mkdir()
    (out / MARKER).write_text("{}")
    (out / "old.npy").write_bytes(b"old")
    os.replace(out, tmp_path / f".prepared.replaced-{dead_pid()}-0123abcd")  # a killed --overwrite
    out.mkdir()
    (out / MARKER).write_text("{}")
    done = subprocess.run([sys.executable, "-m", "mrdistill.cli.main", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "default"})
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 2, done.stderr
    assert lines[0].startswith("mrdistill: warning: ") and "restored" in lines[0]
    assert lines[1].startswith("mrdistill: error: ") and (out / "old.npy").read_bytes() == b"old"
