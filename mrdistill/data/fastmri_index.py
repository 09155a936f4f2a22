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
from mrdistill.config import FastMRIConfig
from mrdistill.data.fastmri_io import VolumeInfo, inspect_files
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
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT or doc.get("folder") != str(folder.resolve()):
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


def _cached_info(hit: Any, stamp: list[int], path: Path) -> VolumeInfo | None:
    """The cached description of `path` if the cache entry is for this very file version and
    well-formed (a damaged cache entry is a miss, never an error)."""
    if not isinstance(hit, dict) or hit.get("stamp") != stamp:
        return None
    try:
        return VolumeInfo.from_json({**hit["info"], "path": str(path)})
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None


def index_folder(folder: str | Path, cache_dir: str | Path | None = None, *,
                 skip_bad: bool = False, progress: bool = False,
                 time_limit: float = FastMRIConfig.metadata_time_limit) -> FolderIndex:
    """Describe every fastMRI file of `folder` (metadata only), using and refreshing the cache.

    cache_dir: None -> `default_cache_dir()`; "" -> no cache. Files not in the cache are read in
    a worker process, at most `time_limit` seconds each (`fastmri_io.inspect_files`). A bad file
    (or one over the limit) raises `MrdistillError` naming it, or with `skip_bad` is listed in
    `FolderIndex.bad` (bad files are never cached, so a fixed file is picked up next time).
    """
    folder = Path(folder)
    files = list_h5_files(folder)
    use_cache = cache_dir != ""
    cache_path = _cache_file(folder, Path(cache_dir) if cache_dir else default_cache_dir())
    cached = _read_cache(cache_path, folder) if use_cache else {}
    stamps = {}
    found: dict[Path, VolumeInfo | MrdistillError] = {}
    for path in files:
        stat = path.stat()
        stamps[path] = [stat.st_size, stat.st_mtime_ns]
        info = _cached_info(cached.get(path.name), stamps[path], path)
        if info is not None:
            found[path] = info
    misses = [p for p in files if p not in found]
    worker = inspect_files(misses, time_limit)
    try:
        for path, result in zip(misses, tqdm(worker, total=len(misses), desc=f"index {folder.name}",
                                             disable=not progress, leave=False)):
            if isinstance(result, MrdistillError) and not skip_bad:
                raise result  # the first bad file, in name order
            found[path] = result
    finally:
        worker.close()  # stops the worker process now, not when garbage is collected
    entries: dict[str, Any] = {}
    volumes, bad = [], []
    for path in files:
        result = found[path]
        if isinstance(result, MrdistillError):
            bad.append((str(path), str(result)))
            continue
        entries[path.name] = {"stamp": stamps[path], "info": result.to_json()}
        volumes.append(result)
    if use_cache and (misses or set(cached) != set(entries)):
        _write_cache(cache_path, folder, entries)
    if not volumes:
        raise MrdistillError(f"{folder}: none of its {len(files)} .h5 files could be read "
                             f"(first problem: {bad[0][1]})")
    return FolderIndex(volumes, bad)
