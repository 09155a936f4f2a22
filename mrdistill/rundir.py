"""Output folders' lifecycle: claim a folder, replace an old one safely, resume into one.

Every folder a command writes (a run, a demo, a prepared data set, predictions, a study) is claimed
here. A folder mrdistill creates gets a marker file (`.mrdistill`); `overwrite` only ever replaces a
folder that carries it, and never the current folder, a parent of it, the home folder, a filesystem
root, an input of the same command or a folder that contains one. The old folder is not deleted
first: it is renamed aside (`.<name>.replaced-<id>` next to it), the new one is created, and the
old one is removed only when the caller says the new work has started (`OutputDir.commit`, or the
end of the `with` block). If anything fails before that, the new folder is removed and the old
one is renamed back, so a typo in a config never costs the previous results.

    with claim(path, overwrite=args.overwrite, inputs=[...], command="train") as out:
        ...validate, build data and models (errors here restore the old folder)...
        out.commit()  # the new run has started: the replaced folder is removed
        ...train...

The marker also lists what mrdistill wrote into the folder (`atomic.record_written`), and
`overwrite` deletes nothing else: a file the record does not name is named in the refusal and
kept. A folder holding only the marker (a run that was killed before writing anything) counts as
empty. While a command writes a folder it holds a lock on it (`FolderLock`: an advisory `flock` on
the folder itself): a second writer is refused with the holder's PID, and the lock of a process
that died is free again (the operating system releases it), so it is simply taken over. Under torchrun only rank 0 claims, and so locks, the run folder.

A process killed half-way leaves its traces, and the next claim of the same folder deals with
them (`recover`): the folder set aside by an `--overwrite` that never committed is renamed back
(the killed new folder, mrdistill's own and incomplete, is removed), one being removed after a
commit is removed, and temporary files of killed atomic writes inside a folder that is resumed
into are deleted (`atomic.remove_stale_temporaries`). Only names this module or `atomic` writes,
whose writer process no longer exists, are ever touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from mrdistill.atomic import (MARKER, atomic_write_text, is_temporary_name, process_alive,
                              read_record, remove_stale_temporaries)
from mrdistill.errors import MrdistillError
from mrdistill.folder_lock import FolderLock

_SHOWN = 3  # files named in a refusal
_ASIDE = re.compile(r"^\.(?P<name>.+)\.(?P<state>replaced|removing)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _aside_name(out: Path, state: str) -> Path:
    """`.<name>.<state>-<pid>-<random>` next to `out`: the pid tells a later run whether the
    process that set the folder aside is still alive."""
    return out.parent / f".{out.name}.{state}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_tree(path: Path) -> None:
    """Rename `path` to a `removing` name first, so a kill during the removal leaves a name the
    next run knows it may finish removing, then remove it."""
    doomed = _aside_name(path, "removing")
    try:
        os.replace(path, doomed)
    except OSError:  # cannot rename (permissions): remove it where it is
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)


def is_ours(path: Path) -> bool:
    """Whether `path` is a folder mrdistill created (it holds the marker file)."""
    return (path / MARKER).is_file()


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _within(inner: Path, outer: Path) -> bool:
    """inner == outer or inner lies inside outer (both resolved)."""
    return inner == outer or outer in inner.parents


def check_output_path(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Refuse an output folder that is an existing file or equals or contains an input of the same
    command (writing there would change the user's data). Returns the path as given."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise MrdistillError(f"{out}: exists and is a file, not a folder; choose another output folder")
    target = _resolved(out)
    for item in inputs:
        if _within(_resolved(item), target):
            raise MrdistillError(f"{out}: the output folder is (or contains) the input {item}; "
                                 f"choose another output folder")
    return out


def _same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file (the same path resolved, or a hard link to it)."""
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist
        return False


def check_output_file(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Refuse an output file that is (by path, link or hard link) an input of the same command or
    lies inside an input folder: no flag makes an input an output. Returns the path as given."""
    out = Path(path)
    for item in inputs:
        if _same_file(out, Path(item)) or _within(_resolved(out), _resolved(item)):
            raise MrdistillError(f"{out}: the output is the input {item}; an input is never "
                                 f"overwritten, choose another output file")
    return out


def check_writable(path: str | os.PathLike[str]) -> None:
    """Refuse an output folder `path` (existing or to be created) that cannot be written: its
    nearest existing folder is a file or not writable for this user. No side effects, so commands
    that write only at the end (export, benchmark) check it before minutes of work."""
    here = Path(os.path.abspath(path))
    while not os.path.lexists(here) and here.parent != here:
        here = here.parent
    if not here.is_dir():
        raise MrdistillError(f"{path}: cannot write the output there ({here} is a file, not a folder)")
    if not os.access(here, os.W_OK | os.X_OK):
        raise MrdistillError(f"{path}: cannot write the output there ({here}: Permission denied)")


def _bookkeeping(name: str) -> bool:
    """Names mrdistill keeps in a folder besides its outputs: the marker, temporary files."""
    return name == MARKER or is_temporary_name(name)


def has_content(path: Path) -> bool:
    """Whether folder `path` holds anything but mrdistill's bookkeeping (a folder holding only a
    marker, as a run killed before its first write leaves it, counts as empty)."""
    return any(not _bookkeeping(entry.name) for entry in path.iterdir())


def unrecorded_files(folder: Path) -> list[Path]:
    """Files below mrdistill's `folder` that its marker does not list as written by mrdistill
    (a folder inside with a marker of its own is judged by its own record); empty folders and
    bookkeeping names are not counted. `--overwrite` deletes a folder only when this is empty."""
    recorded = set(read_record(folder / MARKER))
    found: list[Path] = []

    def walk(here: Path, prefix: str) -> None:
        for entry in sorted(here.iterdir()):
            name = prefix + entry.name
            if name in recorded or _bookkeeping(entry.name):
                continue
            if entry.is_dir() and not entry.is_symlink():
                if is_ours(entry):
                    found.extend(unrecorded_files(entry))
                else:
                    walk(entry, name + "/")
            else:
                found.append(entry)

    walk(folder, "")
    return found


def _refuse_to_replace(out: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    target = _resolved(out)
    cwd = _resolved(Path.cwd())
    if target.parent == target or target == _resolved(Path.home()) or _within(cwd, target):
        raise MrdistillError(f"{out}: refusing to replace the current folder, a parent of it, the "
                             f"home folder or a filesystem root; choose another output folder")
    if not is_ours(out):
        raise MrdistillError(f"{out} already holds files that mrdistill did not create (no {MARKER} "
                             f"marker); --overwrite only replaces mrdistill's own folders, so "
                             f"remove it yourself or choose another output folder")
    check_output_path(out, inputs)
    foreign = unrecorded_files(out)
    if foreign:
        names = ", ".join(str(p.relative_to(out)) for p in foreign[:_SHOWN])
        more = f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
        raise MrdistillError(f"{out} holds files mrdistill did not write: {names}{more}; "
                             f"--overwrite deletes only mrdistill's own files, so move them out "
                             f"or choose another output folder")


class OutputDir:
    """A claimed output folder (`path`); `commit` removes the folder it replaced, if any."""

    def __init__(self, path: Path, replaced: Path | None, created: bool, reused: bool = False,
                 locks: Iterable[FolderLock] = ()) -> None:
        self.path = path
        self.reused = reused  # an existing folder resumed into: nothing of it is ever removed
        self._replaced = replaced
        self._created = created
        self.committed = reused
        self._locks = list(locks)  # this folder's (and the replaced one's) while the command writes

    def release(self) -> None:
        """The command is done writing: free the folder locks it held (idempotent)."""
        for lock in self._locks:
            lock.release()

    def commit(self) -> None:
        """The new work has started: remove the replaced folder (idempotent)."""
        if not self.committed and self._replaced is not None:
            _remove_tree(self._replaced)
        self.committed = True

    def abort(self) -> None:
        """Undo the claim before `commit`: remove what was written and restore the old folder."""
        if self.committed:
            return
        if self._created:
            _remove_tree(self.path)
        else:  # an empty folder the user had: empty it again
            for child in self.path.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        if self._replaced is not None:
            os.replace(self._replaced, self.path)
        self.committed = True


def mark(path: Path, command: str) -> None:
    """Write the marker that makes `path` a folder mrdistill created."""
    doc = {"created_by": "mrdistill", "command": command,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(path / MARKER, json.dumps(doc) + "\n")


def _make(out: Path, command: str) -> tuple[bool, FolderLock]:
    """Create `out` (and parents), lock it, then mark it -> (True if the folder did not exist
    before, its lock). An existing (empty) folder that another process holds is refused."""
    try:
        out.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as exc:
        raise MrdistillError(f"{out}: cannot write the output folder ({exc.strerror or exc})") from None
    lock = None
    try:
        lock = FolderLock(out)
        mark(out, command)
    except BaseException as exc:
        if lock is not None:
            lock.release()
        if created and lock is not None:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, OSError):
            raise MrdistillError(f"{out}: cannot write the output folder ({exc.strerror or exc})") from None
        raise
    return created, lock


def open_output(path: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False,
                inputs: Iterable[str | os.PathLike[str]] = (), command: str = "",
                resumable: bool = False) -> OutputDir:
    """Claim `path` for writing; see the module docstring. Call `commit` or `abort` on the result
    (or use `claim`, which does it).

    - missing or empty: created (with the marker);
    - non-empty, `resume`: reused as it is when mrdistill created it (a run continues in it);
    - non-empty, `overwrite`: renamed aside and replaced by a fresh folder (only mrdistill's own);
    - non-empty otherwise: `MrdistillError` (naming --resume too when the command is `resumable`).
    """
    inputs = list(inputs)
    recover(Path(path))
    out = check_output_path(path, inputs)
    if out.is_dir() and has_content(out):
        lock = FolderLock(out) if is_ours(out) else None  # a writer at work is named first
        try:
            return _claim_existing(out, lock, overwrite, resume, inputs, command, resumable)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
    created, lock = _make(out, command)
    return OutputDir(out, None, created, locks=[lock])


def _claim_existing(out: Path, lock: FolderLock | None, overwrite: bool, resume: bool,
                    inputs: list[str | os.PathLike[str]], command: str, resumable: bool) -> OutputDir:
    """`open_output` for a folder with contents (`lock`: its lock, None when it is not ours)."""
    if resume:
        if lock is None:
            raise MrdistillError(f"{out}: cannot resume in a folder mrdistill did not create "
                                 f"(no {MARKER} marker)")
        remove_stale_temporaries(out)  # what writes killed in an earlier run left behind
        return OutputDir(out, None, created=False, reused=True, locks=[lock])
    if not overwrite:
        options = ("pass --resume to continue it, --overwrite to replace it," if resumable
                   else "pass --overwrite")
        raise MrdistillError(f"{out} already holds results; {options} or choose another "
                             f"name/output folder")
    _refuse_to_replace(out, inputs)
    aside = _aside_name(out, "replaced")
    try:
        os.replace(out, aside)
    except OSError as exc:
        raise MrdistillError(f"{out}: cannot replace it ({exc.strerror or exc})") from None
    try:
        created, new_lock = _make(out, command)
    except BaseException:
        os.replace(aside, out)
        raise
    return OutputDir(out, aside, created, locks=[new_lock, *([lock] if lock else [])])


def _stale_asides(out: Path) -> dict[str, list[Path]]:
    """Folders that a killed claim of `out` left next to it, by state (`replaced`, `removing`)."""
    found: dict[str, list[Path]] = {"replaced": [], "removing": []}
    if out.name in ("", ".", "..") or not out.parent.is_dir():
        return found
    for entry in out.parent.iterdir():
        match = _ASIDE.match(entry.name)
        if (match and match["name"] == out.name and not process_alive(int(match["pid"]))
                and entry.is_dir() and not entry.is_symlink()):
            found[match["state"]].append(entry)
    return found


def recover(out: Path) -> None:
    """Finish what a killed claim of `out` left (see the module docstring): a `removing` folder is
    removed; the one folder set aside by an uncommitted `--overwrite` is renamed back to `out`,
    replacing the killed run's own incomplete folder. Anything else is left alone and refused
    with a message that names it (nothing the user had is removed)."""
    found = _stale_asides(out)
    for doomed in found["removing"]:
        shutil.rmtree(doomed, ignore_errors=True)
    replaced = [p for p in found["replaced"] if is_ours(p)]
    if not replaced:
        return
    if len(replaced) > 1 or (out.exists() and not (is_ours(out) or _is_empty_dir(out))):
        raise MrdistillError(f"{out}: an earlier mrdistill run was killed while replacing it, and its "
                             f"previous contents are kept in {', '.join(map(str, sorted(replaced)))}; "
                             f"move that back or remove it yourself")
    if is_ours(out):
        _remove_tree(out)
    elif out.exists():  # an empty folder
        out.rmdir()
    os.replace(replaced[0], out)
    warnings.warn(f"{out}: an earlier run was killed while replacing this folder; its previous "
                  f"contents are restored", stacklevel=3)


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


@contextmanager
def claim(path: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False,
          inputs: Iterable[str | os.PathLike[str]] = (), command: str = "",
          resumable: bool = False) -> Iterator[OutputDir]:
    """`open_output` as a `with` block: an exception before `commit` aborts (old folder restored),
    a normal exit commits."""
    out = open_output(path, overwrite=overwrite, resume=resume, inputs=inputs, command=command,
                      resumable=resumable)
    with committing(out):
        yield out


@contextmanager
def committing(out: OutputDir) -> Iterator[OutputDir]:
    """Hold a claimed folder for a `with` block: an exception aborts it (old folder restored), a
    normal exit commits it."""
    try:
        yield out
    except BaseException:
        out.abort()
        raise
    else:
        out.commit()
    finally:
        out.release()
