"""The metadata index of a folder of fastMRI files, with an on-disk cache.

Opening a fastMRI folder means reading every file's shapes, header and attributes; for 1,000 files
on a network disk that takes minutes. The index is cached as JSON (never pickle: a cache file must
not be able to run code) under `mrdistill.cache.default_cache_dir()`. A cached entry is reused only
while the file's size and modification time are unchanged, so edited or replaced files are re-read;
a second open of an unchanged folder only lists and `stat`s it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mrdistill.atomic import atomic_write_text
from mrdistill.cache import default_cache_dir
from mrdistill.data.fastmri_io import VolumeInfo, inspect_file
from mrdistill.errors import MrdistillError

INDEX_FORMAT = "mrdistill.fastmri-index/1"
H5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class FolderIndex:
    """The good files of a folder (sorted by name) and the bad ones as (path, problem)."""

    volumes: list[VolumeInfo]
    bad: list[tuple[str, str]] = field(default_factory=list)


def list_h5_files(folder: str | Path) -> list[Path]:
    """The `.h5`/`.hdf5` files of `folder`, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MrdistillError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix in H5_SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not files:
        raise MrdistillError(f"{folder}: no .h5 files in this folder")
    return files


def _cache_file(folder: Path, cache_dir: Path) -> Path:
    key = hashlib.sha256(str(folder.resolve()).encode("utf-8")).hexdigest()[:24]
    return cache_dir / "fastmri" / f"{key}.json"


def _read_cache(path: Path, folder: Path) -> dict[str, Any]:
    """Cached entries by file name; a missing, foreign or corrupt cache is simply empty."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if doc.get("format") != INDEX_FORMAT or doc.get("folder") != str(folder.resolve()):
        return {}
    files = doc.get("files")
    return files if isinstance(files, dict) else {}


def _write_cache(path: Path, folder: Path, entries: dict[str, Any]) -> None:
    """Atomic write; a cache that cannot be written (read-only home) is skipped silently, since
    the index is still correct, only slower to build next time."""
    doc = {"format": INDEX_FORMAT, "folder": str(folder.resolve()), "files": entries}
    try:
        atomic_write_text(path, json.dumps(doc))
    except OSError:
        pass


def index_folder(folder: str | Path, cache_dir: str | Path | None = None, *,
                 skip_bad: bool = False, progress: bool = False) -> FolderIndex:
    """Describe every fastMRI file of `folder` (metadata only), using and refreshing the cache.

    cache_dir: None -> `default_cache_dir()`; "" -> no cache. A bad file raises `MrdistillError`
    naming it, or with `skip_bad` is listed in `FolderIndex.bad` (bad files are never cached, so
    a fixed file is picked up next time).
    """
    folder = Path(folder)
    files = list_h5_files(folder)
    use_cache = cache_dir != ""
    cache_path = _cache_file(folder, Path(cache_dir) if cache_dir else default_cache_dir())
    cached = _read_cache(cache_path, folder) if use_cache else {}
    entries: dict[str, Any] = {}
    volumes, bad = [], []
    changed = set(cached) != {p.name for p in files}
    for path in tqdm(files, desc=f"index {folder.name}", disable=not progress, leave=False):
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        hit = cached.get(path.name)
        if hit is not None and hit.get("stamp") == stamp:
            info = VolumeInfo.from_json(hit["info"])
            if info.path != str(path):  # same folder reached by another path spelling
                info = VolumeInfo.from_json({**hit["info"], "path": str(path)})
        else:
            changed = True
            try:
                info = inspect_file(path)
            except MrdistillError as exc:
                if not skip_bad:
                    raise
                bad.append((str(path), str(exc)))
                continue
        entries[path.name] = {"stamp": stamp, "info": info.to_json()}
        volumes.append(info)
    if use_cache and changed:
        _write_cache(cache_path, folder, entries)
    if not volumes:
        raise MrdistillError(f"{folder}: none of its {len(files)} .h5 files could be read "
                             f"(first problem: {bad[0][1]})")
    return FolderIndex(volumes, bad)
