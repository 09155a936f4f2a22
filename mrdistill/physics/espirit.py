"""ESPIRiT coil sensitivities (sigpy, an optional dependency) and how close two sets of maps are.

ESPIRiT (Uecker et al. 2014) finds the maps as the eigenvectors, with eigenvalue ~1, of an
operator built from the calibration region's k-space kernels; sigpy's `EspiritCalib` computes them
(power iterations per pixel); maps may be set to zero where the eigenvalue is below `crop`
(outside the object). They are normalised so sum_c |S_c|^2 = 1, as the ratio estimate
(`data.coils.estimate_smaps`) is.

Maps are defined up to one phase common to all coils, which may vary from pixel to pixel, so
`compare_maps` first rotates one set, pixel by pixel, onto the other.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mrdistill.errors import MrdistillError

INSTALL_HINT = "pip install 'mrdistill[measured]'"


def import_sigpy(what: str) -> ModuleType:
    """`sigpy.mri.app`, or a `MrdistillError` saying which extra installs it."""
    try:
        import sigpy.mri.app as app
    except ModuleNotFoundError:
        raise MrdistillError(f"{what} needs sigpy: {INSTALL_HINT}") from None
    return app


def espirit_maps(kspace: Tensor, calib_width: int, *, kernel_width: int = 6, thresh: float = 0.02,
                 crop: float = 0.0) -> Tensor:
    """ESPIRiT maps of one slice: centred k-space complex (C, H, W) whose central
    calib_width x calib_width block is fully sampled -> complex64 (C, H, W). Raises
    `MrdistillError` if sigpy is missing or the calibration block is too small.

    crop 0 (the default) keeps the maps everywhere, so a SENSE image keeps the background the
    root-sum-of-squares target has; sigpy's 0.95 zeroes it (SSIM against the RSS target fell
    from 0.78 to 0.58 on pyqmri's flip angle 4 at 4x), and with the 9 central lines of fastMRI's
    8x mask at 224 columns it zeroed nearly the whole image (benchmarks/measured_data.py)."""
    app = import_sigpy("data.coil_maps: espirit")
    if calib_width <= kernel_width:
        raise MrdistillError(f"ESPIRiT needs a fully sampled centre wider than its {kernel_width}-sample "
                             f"kernel, got {calib_width} line(s) (use a mask with a wider centre band)")
    ksp = kspace.detach().cpu().numpy().astype(np.complex64)
    maps = app.EspiritCalib(ksp, calib_width=calib_width, thresh=thresh, kernel_width=kernel_width,
                            crop=crop, show_pbar=False).run()
    return torch.from_numpy(np.asarray(maps)).to(torch.complex64).to(kspace.device)


def align_common_phase(maps: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`maps` complex (C, H, W) times the per-pixel phase exp(i phi) that brings them closest to
    `reference` (phi = angle of sum_c conj(maps_c) reference_c)."""
    inner = (np.conj(maps) * reference).sum(axis=0)
    return maps * np.exp(1j * np.angle(inner))[None]


def compare_maps(maps: np.ndarray, reference: np.ndarray, region: np.ndarray) -> dict[str, Any]:
    """Agreement of two sets of coil maps complex (C, H, W) inside a bool (H, W) region:
    `magnitude_correlation` per coil (Pearson of |S_c|), `nrmse` per coil and `nrmse_all`
    (||S - R|| / ||R|| after the per-pixel common phase is removed) and the medians."""
    if maps.shape != reference.shape or region.shape != maps.shape[1:] or not region.any():
        raise MrdistillError(f"compare_maps: maps {maps.shape}, reference {reference.shape} and a "
                             f"non-empty region {region.shape} must agree")
    aligned = align_common_phase(maps, reference)
    corr, nrmse = [], []
    for a, r in zip(aligned, reference):
        ma, mr = np.abs(a[region]), np.abs(r[region])
        corr.append(float(np.corrcoef(ma, mr)[0, 1]))
        nrmse.append(float(np.linalg.norm(a[region] - r[region]) / np.linalg.norm(r[region])))
    total = float(np.linalg.norm(aligned[:, region] - reference[:, region]) / np.linalg.norm(reference[:, region]))
    return {"magnitude_correlation": corr, "nrmse": nrmse, "nrmse_all": total,
            "median_magnitude_correlation": float(np.median(corr)), "median_nrmse": float(np.median(nrmse)),
            "pixels": int(region.sum())}
