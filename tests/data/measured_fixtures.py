"""Tiny stand-ins for the measured archives: a pyqmri-shaped HDF5 file (k-space origin at [0, 0],
the layout of pyqmri's VFA_cart_smalltest.h5), twix-shaped readouts (what twixtools returns for a
Cartesian scan), and source-distribution tar.gz archives holding them under the pinned paths."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import h5py
import numpy as np
import torch

from mrdistill.data.coils import simulate_coil_maps
from mrdistill.data import measured
from mrdistill.data.measured import MeasuredArchive
from mrdistill.data.measured_convert import TwixReadout, twix_kspace
from tests.data.format_fixtures import phantom


def coil_images(contrasts: int, coils: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """complex64 (contrasts, coils, h, w): phantom x simulated coil maps, one phantom per contrast."""
    maps = simulate_coil_maps(coils, (h, w)).numpy()
    return (phantom(contrasts, h, w, seed)[:, None] * maps[None]).astype(np.complex64)


def write_pyqmri_h5(path: Path, contrasts: int = 10, coils: int = 3, h: int = 24, w: int = 20) -> np.ndarray:
    """A file laid out like pyqmri's VFA file; returns the coil images it encodes."""
    images = coil_images(contrasts, coils, h, w)
    k = np.fft.fft2(images, norm="ortho")[:, :, None]  # origin at [0, 0], as pyqmri stores it
    maps = simulate_coil_maps(coils, (h, w)).numpy()[:, None]
    with h5py.File(path, "w") as f:
        f["real_dat"] = k.real.astype(np.float32)
        f["imag_dat"] = k.imag.astype(np.float32)
        f["Coils"] = maps.astype(np.complex64)
        f.attrs["fa"] = np.linspace(0.02, 0.33, contrasts)
    return images


def twix_readouts(coils: int = 2, lines: int = 16, columns: int = 40, center_line: int = 8,
                  seed: int = 0) -> tuple[list[TwixReadout], np.ndarray]:
    """Readouts (line index, complex (coils, columns)) of a fully sampled 2x oversampled scan of
    a phantom in the middle half of the readout FOV; and the coil images of that FOV, complex64
    (1, coils, columns, lines)."""
    image = np.zeros((columns, lines), np.float32)
    image[columns // 4:3 * columns // 4] = phantom(1, columns // 2, lines, seed)[0]
    maps = simulate_coil_maps(coils, (columns, lines)).numpy()
    images = (image[None] * maps).astype(np.complex64)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    shift = lines // 2 - center_line
    readouts = [TwixReadout(0, col - shift, k[:, :, col]) for col in range(lines)]
    return readouts, images[None]


def make_archive(folder: Path, spec: MeasuredArchive, files: dict[str, bytes]) -> Path:
    """`<folder>/<spec.filename>`: a tar.gz with `files` (member path -> bytes) under its top folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{spec.package}-{spec.version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def torch_rss(images: np.ndarray) -> np.ndarray:
    """RSS over axis 1 of complex (S, C, H, W) -> float32 (S, H, W)."""
    return torch.from_numpy(images).abs().pow(2).sum(1).sqrt().numpy()


def install_stand_ins(tmp_path: Path, monkeypatch) -> Path:
    """A cache folder whose measured-archives/ holds tar.gz stand-ins (a tiny pyqmri-shaped file;
    twix bytes that are never parsed), pinned by their own hashes; the twix reader returns the
    conversion of `twix_readouts` (a twix file cannot be written here: twixtools parses the real
    one in benchmarks/measured_data.py). Returns the cache folder."""
    cache = tmp_path / "cache"
    src = tmp_path / "src"
    src.mkdir()
    write_pyqmri_h5(src / "vfa.h5", contrasts=10, coils=3, h=24, w=20)
    pinned = {}
    for key, spec in measured.ARCHIVES.items():
        data = (src / "vfa.h5").read_bytes() if key == "pyqmri" else b"twix stand-in"
        path = make_archive(cache / "measured-archives", spec, {spec.member: data})
        pinned[key] = dataclasses.replace(spec, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(measured, "ARCHIVES", pinned)
    readouts, _ = twix_readouts(coils=2, lines=16, columns=40, center_line=8)
    monkeypatch.setattr(measured, "read_twix",
                        lambda path: twix_kspace(readouts, 16, 8, 2.0, (200.0, 200.0, 4.0), str(path)))
    return cache
