"""Atomic writes: the target appears only complete, and a failure leaves the old file alone."""

import os
import stat
import subprocess
import sys

import pytest

from mrdistill.atomic import atomic_dir, atomic_path, atomic_write_text, remove_stale_temporaries


def test_atomic_write_replaces_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]  # no temporary left


def test_a_failing_writer_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_users_umask_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "out.txt", "x")
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "series") as folder:
            (folder / "a.png").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "series").stat().st_mode) == mode | ((mode & 0o444) >> 2)


def test_atomic_dir_replaces_a_folder_whole_and_keeps_it_on_failure(tmp_path):
    target = tmp_path / "series"
    with atomic_dir(target) as folder:
        (folder / "a.png").write_bytes(b"1")
    with pytest.raises(RuntimeError), atomic_dir(target) as folder:
        (folder / "b.png").write_bytes(b"2")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in target.iterdir()) == ["a.png"]
    with atomic_dir(target) as folder:
        (folder / "c.png").write_bytes(b"3")
    assert sorted(p.name for p in target.iterdir()) == ["c.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # a process that has exited
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / f".out.nii.gz.{pid}.0123abcd.tmp", tmp_path / "sub" / f".x.h5.{pid}.deadbeef.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    stale_dir = tmp_path / f".pngs.{pid}.00000000.tmp"
    stale_dir.mkdir()
    live = tmp_path / f".other.h5.{os.getpid()}.0123abcd.tmp"  # a write in progress (this process)
    live.write_bytes(b"busy")
    user = tmp_path / ".notes.tmp"  # not a name this module writes
    user.write_bytes(b"mine")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([*stale, stale_dir])
    assert live.exists() and user.exists() and not any(p.exists() for p in stale)


def test_a_folder_set_aside_by_a_killed_atomic_dir_swap_comes_back(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    old = tmp_path / f".pngs.{pid}.0123abcd.old"  # killed between the two renames: no "pngs"
    old.mkdir()
    (old / "a.png").write_bytes(b"1")
    superseded = tmp_path / f".done.{pid}.0123abcd.old"  # killed after the swap: "done" is new
    superseded.mkdir()
    (tmp_path / "done").mkdir()
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([old, superseded])
    assert (tmp_path / "pngs" / "a.png").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done", "pngs"]
