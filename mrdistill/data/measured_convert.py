"""Measured raw k-space in other packages' layouts -> fastMRI's multi-coil layout (pure array code,
plus the two readers of the shipped files).

fastMRI's layout (`fastmri_io`): centred k-space complex64 `(slices, coils, H, W)` with H the
readout and W the phase-encode axis (masks select columns), an orthonormal centred FFT between
k-space and image, and the root-sum-of-squares of the coil images as the target.

- pyqmri's `VFA_cart_smalltest.h5`: `real_dat` / `imag_dat` float32 `(contrasts, coils, 1, H, W)`
  with the k-space origin at index [0, 0]; `np.fft.ifft2` of it is the image with the head in the
  middle (viewed when this was written), so the centred k-space is `fft2c` of that image. Each
  flip angle becomes one "slice" (a contrast of the same slice). The file does not say which axis
  was phase encoded, nor the field of view; the readout oversampling is already removed (the head
  fills the 224 samples of both axes).
- A Siemens twix file (read with twixtools): one readout per line, complex `(coils, columns)` with
  the readout 2x oversampled; lines placed at `line - center_line + W // 2`, repeated lines
  averaged, then the oversampling removed as fastMRI does: the image-space readout cropped to its
  central 1/oversampling. A file shorter than its raid-file header says (a cut copy) is refused:
  twixtools itself would read on past its end.

Noise: the standard deviation per real/imaginary component of each coil's k-space, from the four
corners of k-space (the outer eighth of both axes, where a fully sampled acquisition holds almost
only noise), by the Rayleigh median: for complex Gaussian noise of std s per component, the median
of |k| is s * sqrt(2 ln 2), and the median ignores the few corner samples that still hold signal.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mrdistill.data.coils import rss
from mrdistill.errors import MrdistillError, describe_exception
from mrdistill.physics.fft import fft2c, ifft2c

_CORNER_FRACTION = 1 / 8  # noise estimate: the outer eighth of each k-space axis


@dataclass(frozen=True)
class Converted:
    """One converted acquisition: kspace complex64 (S, C, H, W) centred; target float32 (S, H, W)
    (RSS of the coil images); noise_std float64 (C,) per real/imag component; fov_mm (readout,
    phase, slice thickness) after oversampling removal, or None where the source does not record it."""

    kspace: np.ndarray
    target: np.ndarray
    noise_std: np.ndarray
    fov_mm: tuple[float, float, float] | None


def check_kspace(kspace: np.ndarray, source: str) -> np.ndarray:
    """Refuse k-space without data: `(S, C, H, W)` with an empty axis (zero coils, ...), or values
    that are not finite. Returns it as complex64."""
    if kspace.ndim != 4 or min(kspace.shape) == 0:
        raise MrdistillError(f"{source}: k-space must be (slices, coils, H, W) with at least one "
                             f"coil and no empty axis, got shape {tuple(kspace.shape)}")
    if not np.isfinite(kspace.view(np.float32) if kspace.dtype == np.complex64 else kspace).all():
        raise MrdistillError(f"{source}: k-space contains NaN or Inf values")
    if not np.any(kspace):
        raise MrdistillError(f"{source}: k-space is all zero (no signal)")
    return kspace.astype(np.complex64, copy=False)


def estimate_noise_std(kspace: np.ndarray) -> np.ndarray:
    """Noise std per real/imag component of each coil: complex (S, C, H, W) -> float64 (C,), from
    the four k-space corners (outer eighth of both axes) by the Rayleigh median."""
    h, w = kspace.shape[-2:]
    ch, cw = max(1, int(h * _CORNER_FRACTION)), max(1, int(w * _CORNER_FRACTION))
    rows = np.r_[0:ch, h - ch:h]
    cols = np.r_[0:cw, w - cw:w]
    corners = np.abs(kspace[..., rows[:, None], cols[None, :]])  # (S, C, 2ch, 2cw)
    per_coil = np.moveaxis(corners, 1, 0).reshape(kspace.shape[1], -1)
    return np.median(per_coil, axis=1).astype(np.float64) / math.sqrt(2 * math.log(2))


def rss_target(kspace: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares of the coil images: centred k-space complex (S, C, H, W) -> float32 (S, H, W)."""
    return rss(ifft2c(torch.from_numpy(kspace)), dim=1).numpy()


def _finish(kspace: np.ndarray, source: str, fov_mm: tuple[float, float, float] | None) -> Converted:
    kspace = check_kspace(kspace, source)
    return Converted(kspace, rss_target(kspace), estimate_noise_std(kspace), fov_mm)


# ---------------------------------------------------------------- pyqmri


def pyqmri_kspace(real: np.ndarray, imag: np.ndarray, source: str = "pyqmri") -> Converted:
    """pyqmri's `real_dat`, `imag_dat` float (contrasts, coils, 1, H, W), k-space origin at
    [0, 0] -> centred fastMRI-layout k-space (contrasts, coils, H, W) (see the module docstring)."""
    if real.shape != imag.shape or real.ndim != 5 or real.shape[2] != 1:
        raise MrdistillError(f"{source}: real_dat and imag_dat must both be (contrasts, coils, 1, H, W), "
                             f"got {real.shape} and {imag.shape}")
    k = check_kspace((real[:, :, 0] + 1j * imag[:, :, 0]).astype(np.complex64), source)
    image = np.fft.ifft2(k, norm="ortho").astype(np.complex64)  # the head lies in the middle
    return _finish(fft2c(torch.from_numpy(image)).numpy(), source, None)


def read_pyqmri(path: str | Path) -> tuple[Converted, np.ndarray]:
    """`VFA_cart_smalltest.h5` -> (its converted k-space, its shipped `Coils` maps complex64 (C, H, W))."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            real, imag = np.asarray(f["real_dat"][()]), np.asarray(f["imag_dat"][()])
            coils = np.asarray(f["Coils"][()])
    except (OSError, KeyError, ValueError) as exc:
        raise MrdistillError(f"{path}: not pyqmri's VFA file ({describe_exception(exc)})") from None
    converted = pyqmri_kspace(real, imag, str(path))
    if coils.shape != (converted.kspace.shape[1], 1, *converted.kspace.shape[-2:]):
        raise MrdistillError(f"{path}: 'Coils' must be (coils, 1, H, W) like the k-space, got {coils.shape}")
    return converted, coils[:, 0].astype(np.complex64)


# ---------------------------------------------------------------- twix


@dataclass(frozen=True)
class TwixReadout:
    """One imaging readout: slice and line counters and the samples complex (coils, columns)."""

    slice: int
    line: int
    data: np.ndarray


def remove_readout_oversampling(kspace: np.ndarray, factor: float) -> np.ndarray:
    """Crop the image-space readout (H) to its central 1/factor, as fastMRI's data were:
    centred k-space complex (..., H, W) -> (..., round(H / factor), W)."""
    if factor <= 1:
        return kspace
    image = ifft2c(torch.from_numpy(np.ascontiguousarray(kspace)))
    h = image.shape[-2]
    keep = int(round(h / factor))
    start = (h - keep) // 2
    return fft2c(image[..., start:start + keep, :].contiguous()).numpy()


def twix_kspace(readouts: Sequence[TwixReadout], num_lines: int, center_line: int,
                oversampling: float, fov_mm: tuple[float, float, float] | None, source: str = "twix") -> Converted:
    """Imaging readouts of a Cartesian twix acquisition -> centred fastMRI-layout k-space
    (slices, coils, H = columns / oversampling, W = num_lines); repeated lines are averaged."""
    if not readouts:
        raise MrdistillError(f"{source}: no image data (the file holds no imaging readouts)")
    shapes = {r.data.shape for r in readouts}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise MrdistillError(f"{source}: imaging readouts must all be (coils, columns), got {sorted(shapes)}")
    coils, columns = next(iter(shapes))
    if coils == 0 or columns == 0:
        raise MrdistillError(f"{source}: k-space must have at least one coil and one sample per "
                             f"readout, got readouts of shape ({coils}, {columns})")
    slices = sorted({r.slice for r in readouts})
    k = np.zeros((len(slices), coils, columns, num_lines), np.complex128)
    hits = np.zeros((len(slices), num_lines), np.int64)
    shift = num_lines // 2 - center_line
    for r in readouts:
        col = r.line + shift
        if not 0 <= col < num_lines:
            raise MrdistillError(f"{source}: line {r.line} lies outside the {num_lines} phase encodes")
        s = slices.index(r.slice)
        k[s, :, :, col] += r.data
        hits[s, col] += 1
    k /= np.maximum(hits, 1)[:, None, None, :]
    k = check_kspace(k.astype(np.complex64), source)
    return _finish(remove_readout_oversampling(k, oversampling), source, fov_mm)


def check_twix_length(path: str | Path, size: int, extents: Sequence[tuple[int, int]]) -> None:
    """Refuse a file of `size` bytes shorter than its measurements' (offset, length) extents, as
    recorded in a VE twix file's raid-file header (VB files record none): past the end twixtools
    reads zeros as readouts or repeats the last one, which would give wrong k-space or a
    misleading error."""
    end = max((off + length for off, length in extents), default=0)
    if end > size:
        raise MrdistillError(f"{path}: truncated twix file ({size} bytes, but its measurement data end at "
                             f"byte {end}; copy or download it again)")


def read_twix(path: str | Path) -> Converted:
    """A Siemens twix `.dat` (the last measurement of the file) -> converted k-space; needs
    twixtools (`pip install 'mrdistill[measured]'`)."""
    try:
        import twixtools
    except ModuleNotFoundError:
        raise MrdistillError("reading twix files needs twixtools: pip install 'mrdistill[measured]'") from None
    try:
        # twixtools prints its warnings about damaged files even when not verbose: keep them off stdout
        with contextlib.redirect_stdout(io.StringIO()):
            layout = twixtools.read_twix(str(path), parse_prot=False, parse_data=False, verbose=False)
            check_twix_length(path, Path(path).stat().st_size,
                              [(int(s["raidfile_hdr"]["off_"]), int(s["raidfile_hdr"]["len_"]))
                               for s in layout if "raidfile_hdr" in s])
            # no PMU or geometry: mrdistill uses neither, and the geometry fails on a measurement without data
            scans = twixtools.read_twix(str(path), parse_pmu=False, parse_geometry=False, verbose=False)
            meas = scans[-1]
            readouts = [TwixReadout(int(m.cSlc), int(m.cLin), np.asarray(m.data))
                        for m in meas["mdb"] if m.is_image_scan()]
        centers = {int(m.mdh.CenterLin) for m in meas["mdb"] if m.is_image_scan()}
        prot = meas["hdr"]["MeasYaps"]
        lines = int(prot["sKSpace"]["lPhaseEncodingLines"])
        oversampling = float(meas["hdr"]["Meas"].get("flReadoutOSFactor", 1.0) or 1.0)
        geometry = prot["sSliceArray"]["asSlice"][0]
        fov = (float(geometry["dReadoutFOV"]), float(geometry["dPhaseFOV"]), float(geometry["dThickness"]))
    except MrdistillError:
        raise
    except Exception as exc:  # noqa: BLE001 - twixtools raises many types on damaged files
        raise MrdistillError(f"{path}: not a readable twix file ({describe_exception(exc)})") from None
    if len(centers) > 1:
        raise MrdistillError(f"{path}: the imaging readouts disagree on the centre line ({sorted(centers)})")
    return twix_kspace(readouts, lines, centers.pop() if centers else lines // 2, oversampling, fov, str(path))
