"""A cell is trained by one process at a time: the process that trains it holds `<cells>/.<cell
folder>.lock`, created with O_EXCL and holding who took it (host, pid, Slurm job id).

A lock is stale when its holder is gone: on the same host, its process no longer exists; a Slurm
job requeued after preemption or a timeout (same job id, new process) takes its own lock back.
Locks of other hosts are trusted until their job ends (the driver watches those jobs).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from mrdistill.atomic import process_alive


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.lock"


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "job": os.environ.get("SLURM_JOB_ID"), "since": time.time()}


def holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds the cell's lock (None: nobody, or an unreadable lock being written)."""
    try:
        return json.loads(lock_path(run_dir).read_text())
    except (OSError, ValueError):
        return None


def is_stale(info: dict[str, Any]) -> bool:
    """Whether a lock's holder is certainly gone (or is this very Slurm job, requeued)."""
    me = _me()
    if info.get("job") and info.get("job") == me["job"]:
        return True
    return info.get("host") == me["host"] and not process_alive(int(info.get("pid", -1)))


def try_lock(run_dir: Path) -> bool:
    """Take the cell's lock (replacing a stale one) -> True, or False when a live process holds it."""
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = holder(run_dir)
            if info is None or not is_stale(info):
                return False
            path.unlink(missing_ok=True)  # a dead holder's lock: take it over
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(_me(), f)
        return True
    return False


def unlock(run_dir: Path) -> None:
    """Release the lock if this process holds it."""
    info = holder(run_dir)
    if info is not None and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        lock_path(run_dir).unlink(missing_ok=True)


def is_locked(run_dir: Path) -> bool:
    """A live (not stale) holder has the cell."""
    info = holder(run_dir)
    return lock_path(run_dir).exists() and (info is None or not is_stale(info))
