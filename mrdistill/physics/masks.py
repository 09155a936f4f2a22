"""Sampling masks for accelerated MRI (1 = sampled).

Every sampler takes a shape and a seed and uses its own local RNG: the global torch / numpy / random
state is never read or changed, so masks are reproducible and data loading cannot perturb training.

Layouts (float32, broadcastable against complex k-space (N, C, H, W)):
- 1-D Cartesian kinds sample columns (the W axis): `(1, 1, W)`.
- 2-D kinds sample points: `(1, H, W)`.
`centred=True` matches the centred `fft2c` (DC at index W//2); `centred=False` is the un-centred
layout (DC at index 0), i.e. an `ifftshift` of the centred mask.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mrdistill.physics.mask_kinds import MASK_KINDS
from mrdistill.errors import MrdistillError, check_choice, describe_exception

# An integer seed, or an array seed (a tuple of 32-bit words) as fastMRI seeds validation masks.
MaskSeed = int | tuple[int, ...]


# fastMRI's pairing of acceleration and centre fraction; other accelerations keep the same product.
_FASTMRI_CENTER_FRACTIONS = {4.0: 0.08, 8.0: 0.04}
_KDMRI_CENTER_LINES = 10
_GAUSSIAN2D_CENTER_LINES = 8


def stable_seed(name: str) -> int:
    """A seed in [0, 2**32) from a string, identical across processes and runs.

    Python's `hash` is salted per process, so validation masks seeded with it would change between
    runs; a cryptographic digest does not.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def fastmri_seed(file_name: str) -> tuple[int, ...]:
    """The seed fastMRI's data transforms give a file's fixed (validation/test) mask: the code points
    of its file name with extension (`"file1000001.h5"`), used by numpy as an array seed. Masks
    drawn with it are fastMRI's masks for that file, so validation numbers are comparable."""
    if not file_name:
        raise MrdistillError("fastmri_seed needs a non-empty file name")
    return tuple(ord(c) for c in file_name)


def make_mask(
    kind: str,
    shape: tuple[int, int],
    acceleration: float,
    *,
    seed: MaskSeed,
    center_fraction: float | None = None,
    center_lines: int | None = None,
    centred: bool = True,
    path: str | None = None,
) -> Tensor:
    """Build a sampling mask.

    Args:
        kind: one of `MASK_KINDS`.
        shape: (H, W) of the k-space to be sampled.
        acceleration: undersampling factor (> 1); ignored for `fixed`.
        seed: integer in [0, 2**32), or a non-empty tuple of such integers (an array seed, as
            `fastmri_seed` gives); the mask is a pure function of its arguments.
        center_fraction: fraction of fully sampled central columns (`random`,
            `equispaced_fraction`, `kdmri`, `kdmri_wide`); default for the fastMRI kinds 0.08 at
            4x, 0.04 at 8x, else 0.32/acceleration.
        center_lines: number of fully sampled central lines (alternative to `center_fraction`);
            default 10 for `kdmri`/`kdmri_wide` and an 8x8 block for `gaussian2d` (both capped at
            half the sampling budget on small images).
        centred: layout of the returned mask (see module docstring).
        path: `.npy` file for `fixed` (read as a centred mask).

    Returns:
        float32 `(1, 1, W)` for 1-D kinds, `(1, H, W)` for `gaussian2d` and 2-D fixed masks.
    """
    check_choice("mask kind", kind, MASK_KINDS)
    height, width = _check_shape(shape)
    if kind == "fixed":
        mask = _load_fixed(path, height, width)
    else:
        _check_acceleration(acceleration)
        _check_seed(seed)
        if kind == "gaussian2d":
            if center_fraction is not None:
                raise MrdistillError("gaussian2d takes center_lines (block side), not center_fraction")
            # Default block shrinks on small images so it never takes more than half the budget.
            half_budget = int(np.sqrt(round(height * width / acceleration) / 2))
            side = min(_GAUSSIAN2D_CENTER_LINES, half_budget) if center_lines is None else center_lines
            mask = _gaussian2d_mask(height, width, acceleration, seed, side)
        elif kind in ("kdmri", "kdmri_wide"):
            # Default band shrinks on small images so it never takes more than half the budget.
            default = min(_KDMRI_CENTER_LINES, round(width / acceleration) // 2)
            n_low = _num_low(width, acceleration, center_fraction, center_lines, default)
            mask = _kdmri_mask(width, acceleration, seed, n_low, wide=kind == "kdmri_wide")
        else:
            if center_lines is None and center_fraction is None:
                center_fraction = _FASTMRI_CENTER_FRACTIONS.get(float(acceleration), 0.32 / acceleration)
            n_low = _num_low(width, acceleration, center_fraction, center_lines, 0)
            sampler = _random_mask if kind == "random" else _equispaced_fraction_mask
            mask = sampler(width, acceleration, seed, n_low)
    if not mask.any():  # nothing sampled: every reconstruction would be zero
        raise MrdistillError(f"fixed mask {path!r} samples no line (all zeros)" if kind == "fixed" else
                             f"acceleration {acceleration:g} leaves no sampled line of {width} "
                             f"(the largest useful value is {width})")
    if not centred:
        mask = np.fft.ifftshift(mask)
    out = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
    return out.reshape(1, 1, width) if out.ndim == 1 else out.reshape(1, height, width)


# ---------------------------------------------------------------- validation


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
        raise MrdistillError(f"mask shape must be (H, W) with positive integers, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _check_acceleration(acceleration: float) -> None:
    if not np.isfinite(acceleration) or acceleration <= 1:
        raise MrdistillError(f"acceleration must be a number > 1, got {acceleration}")


def _is_seed_word(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and 0 <= value < 2**32


def _check_seed(seed: MaskSeed) -> None:
    # numpy's RandomState (needed for exact fastMRI masks) only takes 32-bit unsigned seed words.
    words = seed if isinstance(seed, tuple) else (seed,)
    if not words or not all(_is_seed_word(w) for w in words):
        raise MrdistillError(f"mask seed must be an integer in [0, 2**32) or a tuple of them, "
                             f"got {seed!r}; see stable_seed() and fastmri_seed()")


def _num_low(width: int, acceleration: float, center_fraction: float | None,
             center_lines: int | None, default_lines: int) -> int:
    """Number of fully sampled central columns, checked against the sampling budget W/acceleration."""
    if center_fraction is not None and center_lines is not None:
        raise MrdistillError("give center_fraction or center_lines, not both")
    if center_fraction is not None:
        if not 0 < center_fraction < 1:
            raise MrdistillError(f"center_fraction must lie in (0, 1), got {center_fraction}")
        # Python's round (banker's rounding) as fastMRI uses it, so line counts agree exactly.
        n_low = round(width * center_fraction)
    else:
        n_low = default_lines if center_lines is None else center_lines
        if int(n_low) != n_low or n_low < 0:
            raise MrdistillError(f"center_lines must be a non-negative integer, got {n_low}")
        n_low = int(n_low)
    if n_low > width / acceleration:
        raise MrdistillError(
            f"{n_low} central lines exceed the budget of {width / acceleration:.1f} lines "
            f"(W={width} / acceleration {acceleration}); lower center_fraction/center_lines"
        )
    return n_low


# ---------------------------------------------------------------- 1-D samplers (centred layout)


def _center_band(width: int, n_low: int) -> np.ndarray:
    """Boolean (W,) with `n_low` central columns set, placed as fastMRI does (covers DC at W//2)."""
    band = np.zeros(width, dtype=bool)
    start = (width - n_low + 1) // 2
    band[start:start + n_low] = True
    return band


def _fastmri_rng(seed: MaskSeed) -> np.random.RandomState:
    """RandomState in the state fastMRI's MaskFunc has after choosing (center_fraction, acceleration).

    fastMRI always draws the index of the (cf, acc) pair, even when there is only one pair; with one
    pair `randint(1)` happens not to advance the legacy generator, but we keep the call so the draw
    order is the same by construction.
    """
    rng = np.random.RandomState(seed)
    rng.randint(1)
    return rng


def _random_mask(width: int, acceleration: float, seed: MaskSeed, n_low: int) -> np.ndarray:
    """fastMRI `RandomMaskFunc`: centre band plus i.i.d. columns with the probability that makes the
    expected total W/acceleration."""
    rng = _fastmri_rng(seed)
    prob = (width / acceleration - n_low) / (width - n_low) if width > n_low else 0.0
    outer = rng.uniform(size=width) < prob
    return (outer | _center_band(width, n_low)).astype(np.float32)


def _equispaced_fraction_mask(width: int, acceleration: float, seed: MaskSeed, n_low: int) -> np.ndarray:
    """fastMRI `EquispacedMaskFractionFunc`: centre band plus columns at a fractional spacing chosen
    so that outer + centre lines total about W/acceleration; random integer offset."""
    if n_low * acceleration >= width:
        raise MrdistillError(
            f"equispaced_fraction needs fewer than W/acceleration = {width / acceleration:.1f} "
            f"central lines, got {n_low}"
        )
    rng = _fastmri_rng(seed)
    spacing = acceleration * (n_low - width) / (n_low * acceleration - width)
    offset = rng.randint(0, high=round(spacing))
    # fastMRI stops the grid before the last column (arange end W - 1) and rounds half to even.
    columns = np.around(np.arange(offset, width - 1, spacing)).astype(np.int64)
    mask = _center_band(width, n_low)
    mask[columns] = True
    return mask.astype(np.float32)


def _weighted_draw(rng: np.random.Generator, weights: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` items drawn without replacement with probability proportional to weights.

    Efraimidis-Spirakis keys (u^(1/w), here as log(u)/w) give exactly sequential weighted sampling
    without replacement in one sort, which stays fast for 2-D masks with 10^5 candidates.
    """
    keys = np.log(rng.random(weights.shape[0])) / weights
    return np.argsort(-keys, kind="stable")[:count]


def _gaussian_density(length: int, sigma: float, floor: float) -> np.ndarray:
    """(length,) density peaked at the DC index length//2; `floor` keeps the edges reachable."""
    offsets = np.arange(length) - length // 2
    return np.exp(-0.5 * (offsets / sigma) ** 2) + floor


def kdmri_line_density(width: int, acceleration: float, n_low: int, *, wide: bool = False) -> np.ndarray:
    """Probability of each column being drawn as an outer line (float64 (W,), sums to 1).

    `wide=False` is KD-MRI's density, that of Schlemper's `cartesian_mask` (Deep-MRI-Reconstruction):
    a Gaussian in the column offset k from DC with sigma = W/10 (peak 1), plus a uniform floor of
    1/(2 x acceleration), with the `n_low` central columns set to zero, renormalised. About 0.62 of
    it (before the centre band is removed) lies within |k| <= W/8 at 4x.

    `wide=True` is the density mrdistill used as `kdmri` before 2026-12 (sigma = W/5, floor 0.05;
    0.46 within |k| <= W/8), kept as the mask kind `kdmri_wide` so older recorded tables stay
    reproducible.
    """
    if wide:
        sigma, floor = width / 5.0, 0.05
    else:
        sigma, floor = width / 10.0, 1.0 / (2.0 * acceleration)
    density = _gaussian_density(width, sigma=sigma, floor=floor)
    density[_center_band(width, n_low)] = 0.0
    return density / density.sum()


def _kdmri_mask(width: int, acceleration: float, seed: MaskSeed, n_low: int, *,
                wide: bool) -> np.ndarray:
    """KD-MRI variable density: `n_low` central lines plus lines drawn without replacement with
    `kdmri_line_density`, round(W/acceleration) lines in total (Schlemper truncates W/acceleration;
    the two agree whenever its fractional part is below one half)."""
    rng = np.random.default_rng(seed)
    total = round(width / acceleration)
    mask = _center_band(width, n_low)
    candidates = np.flatnonzero(~mask)
    density = kdmri_line_density(width, acceleration, n_low, wide=wide)[candidates]
    picked = candidates[_weighted_draw(rng, density, max(total - n_low, 0))]
    mask[picked] = True
    return mask.astype(np.float32)


def _gaussian2d_mask(height: int, width: int, acceleration: float, seed: MaskSeed,
                     side: int) -> np.ndarray:
    """2-D variable density: a fully sampled side x side central block plus points drawn without
    replacement from a separable Gaussian density (std (n-1)/4 per axis, as in SSDU), for
    round(H*W/acceleration) points in total."""
    if int(side) != side or side < 0 or side > min(height, width):
        raise MrdistillError(
            f"center_lines for gaussian2d must be an integer in [0, {min(height, width)}], got {side}"
        )
    total = round(height * width / acceleration)
    if side * side > total:
        raise MrdistillError(
            f"central {side}x{side} block exceeds the budget of {total} points; lower center_lines"
        )
    rng = np.random.default_rng(seed)
    mask = np.outer(_center_band(height, side), _center_band(width, side))
    density = np.outer(
        _gaussian_density(height, sigma=max((height - 1) / 4.0, 0.5), floor=0.0),
        _gaussian_density(width, sigma=max((width - 1) / 4.0, 0.5), floor=0.0),
    ) + 1e-3  # small floor: every point has a chance, and no zero weights in the keys
    candidates = np.flatnonzero(~mask.ravel())
    picked = candidates[_weighted_draw(rng, density.ravel()[candidates], total - side * side)]
    mask.ravel()[picked] = True
    return mask.astype(np.float32)


# ---------------------------------------------------------------- fixed masks


def _load_fixed(path: str | None, height: int, width: int) -> np.ndarray:
    """Read a `.npy` mask: bool or 0/1 numbers, shape (W,) or (H, W)."""
    if path is None:
        raise MrdistillError("mask kind 'fixed' needs path= pointing to a .npy file")
    try:
        data = np.load(Path(path), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises OSError/ValueError/EOFError/...
        raise MrdistillError(f"cannot read fixed mask {path!r}: {describe_exception(exc)}") from None
    if not isinstance(data, np.ndarray):
        raise MrdistillError(f"fixed mask {path!r} must be a .npy array, not an .npz archive")
    if data.dtype != np.bool_ and not np.issubdtype(data.dtype, np.number):
        raise MrdistillError(f"fixed mask {path!r} must be bool or numeric, got dtype {data.dtype}")
    if data.shape not in ((width,), (height, width)):
        raise MrdistillError(
            f"fixed mask {path!r} has shape {data.shape}; expected ({width},) or ({height}, {width})"
        )
    values = data.astype(np.float32)
    if not np.all((values == 0) | (values == 1)):
        raise MrdistillError(f"fixed mask {path!r} must contain only 0/1 (or bool) values")
    if not values.any():
        raise MrdistillError(f"fixed mask {path!r} samples nothing (every value is 0)")
    return values
