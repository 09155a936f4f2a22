"""Coils: root-sum-of-squares, coil sensitivities estimated from the calibration region, coil
combination, and simulated coil maps for `prepare`.

Sensitivity estimation (the method `docs/data.md` documents): the fully sampled central block of
k-space (the calibration region, ACS: the contiguous run of sampled columns, and for 2-D masks
rows, around the k-space centre) is kept, tapered with a Hann window so the low-resolution images
do not ring, and everything else is zeroed. The inverse FFT gives smooth low-resolution coil
images I_c; the sensitivities are S_c = I_c / sqrt(sum_c |I_c|^2 + eps^2), so sum_c |S_c|^2 = 1
wherever there is signal. This is the ratio ("low-resolution division") estimate that E2E-VarNet
uses to initialise its sensitivity network; it needs no iterations and no extra parameters.
`method="espirit"` runs ESPIRiT (`physics.espirit`, sigpy) on the largest calibration block
centred on the k-space centre instead: more accurate at the edges of the object, zero outside it,
and ~20 s per 13-coil 224 x 224 slice on one core.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from mrdistill.errors import MrdistillError, check_choice
from mrdistill.physics.espirit import espirit_maps
from mrdistill.physics.fft import ifft2c
from mrdistill.physics.operators import combine_coils  # noqa: F401 - data.coils' public API

COIL_MAP_METHODS = ("ratio", "espirit")

_MIN_CALIBRATION_LINES = 2
_EPS_RELATIVE = 1e-3  # eps = this x the largest low-resolution RSS value: keeps background finite


def rss(coil_images: Tensor, dim: int = -3, keepdim: bool = False) -> Tensor:
    """Root-sum-of-squares over the coil axis: complex/real (..., C, H, W) -> float32 (..., H, W)."""
    return torch.sqrt((coil_images.abs().float() ** 2).sum(dim=dim, keepdim=keepdim))


def _central_run(line: Tensor) -> slice:
    """The contiguous run of nonzero entries of a 1-D mask that contains its centre index."""
    values = line.detach().cpu().numpy() != 0
    c = values.shape[0] // 2
    if not values[c]:
        return slice(c, c)
    lo, hi = c, c + 1
    while lo > 0 and values[lo - 1]:
        lo -= 1
    while hi < values.shape[0] and values[hi]:
        hi += 1
    return slice(lo, hi)


def calibration_region(mask: Tensor) -> tuple[slice, slice]:
    """(rows, columns) of the fully sampled centre of a centred mask.

    mask: (..., 1, W) for 1-D Cartesian masks (every row is sampled: rows = all) or (..., H, W)
    for 2-D masks (the centre row gives the columns, the centre column the rows).
    """
    m = mask.reshape(-1, *mask.shape[-2:])[0]
    if m.shape[0] == 1:
        return slice(None), _central_run(m[0])
    return _central_run(m[:, m.shape[1] // 2]), _central_run(m[m.shape[0] // 2])


def _hann(n: int) -> Tensor:
    """A Hann taper of length n without its zero end points (every ACS line keeps some weight)."""
    return torch.from_numpy(np.hanning(n + 2)[1:-1].astype(np.float32))


def _centred_width(run: slice, n: int) -> int:
    """The widest even block centred on index n // 2 that lies inside the run (sigpy's crop)."""
    if run == slice(None):
        return n
    return 2 * min(n // 2 - run.start, run.stop - n // 2)


def estimate_smaps(kspace: Tensor, mask: Tensor, method: str = "ratio") -> Tensor:
    """Coil sensitivities from the calibration region (see module docstring).

    kspace: complex (..., C, H, W) centred k-space (full or undersampled; only the calibration
    region is used). mask: the centred sampling mask ((..., 1, W) or (..., H, W)).
    method: "ratio" or "espirit". Returns complex64 (..., C, H, W) with sum_c |S_c|^2 = 1 where
    the low-resolution RSS is well above eps (ESPIRiT: inside the object, 0 outside). Raises
    `MrdistillError` if the mask has no calibration region (or ESPIRiT's sigpy is missing).
    """
    check_choice("data.coil_maps", method, COIL_MAP_METHODS)
    rows, cols = calibration_region(mask)
    width = cols.stop - cols.start
    if width < _MIN_CALIBRATION_LINES:
        raise MrdistillError(
            f"the mask has {width} fully sampled central column(s); coil sensitivity estimation "
            f"needs at least {_MIN_CALIBRATION_LINES} (use a mask with a centre band)")
    if method == "espirit":
        h, w = kspace.shape[-2:]
        calib = min(_centred_width(rows, h), _centred_width(cols, w))
        flat = kspace.reshape(-1, *kspace.shape[-3:])
        return torch.stack([espirit_maps(k, calib) for k in flat]).reshape(kspace.shape)
    taper = _hann(width).to(kspace.device)[None, :]
    if rows != slice(None):
        taper = _hann(rows.stop - rows.start).to(kspace.device)[:, None] * taper
    calib = torch.zeros_like(kspace, dtype=torch.complex64)
    calib[..., rows, cols] = kspace[..., rows, cols].to(torch.complex64) * taper
    low = ifft2c(calib)
    norm = rss(low, dim=-3, keepdim=True)
    eps = _EPS_RELATIVE * norm.amax(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-30)
    return low / torch.sqrt(norm**2 + eps**2)


def simulate_coil_maps(num_coils: int, shape: tuple[int, int]) -> Tensor:
    """Smooth synthetic coil sensitivities complex64 (C, H, W), normalised so sum_c |S_c|^2 = 1.

    Coil c sits outside the field of view (which spans [-1, 1] per axis) at radius 1.2 and angle
    2 pi c / C: a Gaussian magnitude profile (sigma 0.8) centred there and a gentle linear phase
    along its direction, as surface coils around a head or knee give.
    Deterministic: the geometry needs no random numbers.
    """
    if num_coils < 1:
        raise MrdistillError(f"the number of coils must be at least 1, got {num_coils}")
    h, w = shape
    if num_coils == 1:
        return torch.ones((1, h, w), dtype=torch.complex64)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    maps = []
    for c in range(num_coils):
        angle = 2 * math.pi * c / num_coils
        cx, cy = 1.2 * math.cos(angle), 1.2 * math.sin(angle)
        magnitude = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.8**2))
        phase = angle + 0.5 * math.pi * (math.cos(angle) * xx + math.sin(angle) * yy)
        maps.append(torch.polar(magnitude, phase))
    stack = torch.stack(maps).to(torch.complex64)
    return stack / rss(stack, dim=0, keepdim=True)
