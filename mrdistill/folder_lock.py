"""A folder locked while a command writes it: an advisory `flock` on the folder itself.

The operating system releases the lock when its process ends, however it ends, so a lock never
goes stale: the next command after a killed one simply takes it. A second process that wants the
folder is refused with one line naming the holder's process id (Linux lists every `flock` with its
holder in /proc/locks). `rundir.open_output` takes the lock of every folder it claims; under
torchrun only rank 0 claims, and so locks, a run folder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mrdistill.errors import MrdistillError


class FolderLock:
    """An exclusive advisory lock (`flock`) on the folder itself for as long as a command writes
    it; `release` (or the end of the process, however it ends) frees it, so nothing stale is left
    to clean up. Raises `MrdistillError` naming the holder's PID (read from /proc/locks) when
    another live process holds it. Within one process the lock is shared: a later claim of a
    folder this process holds (a library caller running two commands in turn) shares the lock,
    which is free again when every holder released it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise MrdistillError(f"{folder}: cannot lock the output folder ({exc.strerror or exc})") from None
        st = os.fstat(fd)
        mine = [h for h in _HELD if h._fd is not None and h._key == (st.st_dev, st.st_ino)]
        self._key = (st.st_dev, st.st_ino)
        if mine:  # a dup shares the open file, and so the lock, of this process's holder
            os.close(fd)
            self._fd: int | None = os.dup(mine[0]._fd)  # type: ignore[arg-type]
            _HELD.append(self)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = lock_holder(fd)
            os.close(fd)
            raise MrdistillError(f"{folder} is being written by another mrdistill process (PID "
                                 f"{holder or 'unknown'}); wait for it to end, or choose another "
                                 f"output folder") from None
        self._fd = fd
        _HELD.append(self)

    def release(self) -> None:
        """Free the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _HELD.remove(self)


def lock_holder(fd: int) -> int | None:
    """The process holding a `flock` on the file or folder open as `fd`, from Linux's
    /proc/locks ("1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF"); None elsewhere."""
    st = os.fstat(fd)
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue  # POSIX locks, and waiters ("->")
        where = parts[5].split(":")
        try:
            if (len(where) == 3 and int(where[2]) == st.st_ino and int(where[0], 16) == os.major(st.st_dev)
                    and int(where[1], 16) == os.minor(st.st_dev)):
                return int(parts[4])
        except ValueError:
            continue
    return None


_HELD: list[FolderLock] = []


def release_locks() -> None:
    """Free every folder lock this process still holds (the CLI calls it when a command ends;
    `open_output(...).commit()` callers keep their lock until then)."""
    for lock in list(_HELD):
        lock.release()
