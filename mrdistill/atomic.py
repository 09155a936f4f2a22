"""Atomic file writes: write to a temporary file in the target's folder, then `os.replace`.

A crash or an error never leaves a half-written file behind, and never clobbers the previous
version of the target before the new one is complete. Files get the permissions the user's umask
gives a new file (0644 under umask 022), not the 0600 of `tempfile.mkstemp`.

Temporary names are `.<target name>.<pid>.<random>.tmp`: a process killed mid-write leaves one
behind, and `remove_stale_temporaries` (called by the next run in that folder) deletes exactly
those whose writer process no longer exists, never a write in progress. `atomic_dir` moves the
folder it replaces to `.<target name>.<pid>.<random>.old` for the instant of the swap; a stale
one is put back when the target is missing (the kill came between the two renames), else removed.

Every file or folder written here is also recorded in the nearest folder marked as mrdistill's
(`record_written`): the marker `.mrdistill` lists, one JSON string a line after its header line,
what mrdistill wrote there, and `rundir` lets `--overwrite` delete nothing else.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = ".mrdistill"  # makes a folder mrdistill's (rundir); lists what mrdistill wrote into it
_RECORD_DEPTH = 4  # levels above a written file searched for the marker (run/figures/x.png: 1)
_recorded: dict[tuple[str, int], set[str]] = {}  # (marker path, inode) -> names it lists

_TEMP_PATTERN = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.(?P<kind>tmp|old)$")


def is_temporary_name(name: str) -> bool:
    """Whether `name` has the form of this module's temporary files and folders."""
    return _TEMP_PATTERN.match(name) is not None


def _temp_name(target: Path, kind: str = "tmp") -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}"


def _new_temp_file(target: Path) -> Path:
    """Create an empty temporary file next to `target`, mode 0666 minus the umask (the kernel
    applies the umask to `os.open`'s mode, exactly as for any new file the user creates)."""
    while True:
        tmp = _temp_name(target)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:  # a random-name collision: draw again
            continue


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed over `path`, on any error it
    is removed. Parent folders are created. Write the file yourself (torch.save, h5py, ...)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    record_written(target)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder next to `path`; on success it replaces `path` (an existing
    folder there is moved aside first and removed after the rename), on any error it is removed.
    For outputs that are folders of files (a PNG series): readers see all of it or none."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    tmp.mkdir(mode=0o777)  # the umask applies, as for any folder the user creates
    old: Path | None = None
    try:
        yield tmp
        if target.exists():
            old = _temp_name(target, "old")
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old, target)  # put the previous version back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    record_written(target)


def read_record(marker: str | os.PathLike[str]) -> list[str]:
    """The names (relative to the marker's folder, '/'-separated) a marker lists as written by
    mrdistill; [] for a marker without a record (older runs, an empty file)."""
    try:
        lines = Path(marker).read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    except OSError:
        return []
    names = []
    for line in lines:
        try:
            name = json.loads(line)
        except ValueError:
            continue
        if isinstance(name, str):
            names.append(name)
    return names


def record_written(path: str | os.PathLike[str]) -> None:
    """Add `path` to the record of the nearest marked folder above it (at most `_RECORD_DEPTH`
    levels up; none: nothing to do). A name already listed is not added again."""
    target = Path(os.path.abspath(path))
    folder = target.parent
    for _ in range(_RECORD_DEPTH):
        if (folder / MARKER).is_file():
            break
        if folder.parent == folder:
            return
        folder = folder.parent
    else:
        return
    marker = folder / MARKER
    name = target.relative_to(folder).as_posix()
    try:
        key = (str(marker), marker.stat().st_ino)  # a new marker (a new folder) is a new record
    except OSError:
        return
    if name == MARKER:
        return
    seen = _recorded.setdefault(key, set(read_record(marker)))
    if name not in seen:
        with open(marker, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():  # a header line without its newline (a marker written by hand)
                f.seek(-1, os.SEEK_END)
                start = b"" if f.read(1) == b"\n" else b"\n"
            else:
                start = b"{}\n"  # an empty marker: a header line first
            f.write(start + json.dumps(name).encode("utf-8") + b"\n")
        seen.add(name)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 `text` to `path` atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Delete the temporary files and folders that killed atomic writes left in `folder` (and its
    subfolders): only names of the form this module writes whose writer process is gone. A stale
    `.old` folder whose target is missing is renamed back instead (it is the complete previous
    version). Returns what was removed or put back."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in list(folder.iterdir()):
        match = _TEMP_PATTERN.match(entry.name)
        if match and not process_alive(int(match["pid"])):
            target = folder / match["target"]
            if match["kind"] == "old" and not os.path.lexists(target):
                os.replace(entry, target)
            elif entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        elif recursive and entry.is_dir() and not entry.is_symlink():
            removed += remove_stale_temporaries(entry, recursive=True)
    return removed
