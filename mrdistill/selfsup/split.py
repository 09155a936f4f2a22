"""Masks for self-supervised training, drawn from the acquired set Omega only.

- SSDU split (Yaman et al. 2020): Omega = Theta (network input) + Lambda (loss), disjoint; Lambda
  holds a fraction `rho` of the acquired points, chosen uniformly or with a 2-D Gaussian density
  around the k-space centre (std (n-1)/4 per axis), never inside a small central ACS block.
- Re-undersampling (Wu & Li 2024): a further Cartesian undersampling of Omega by `factor`, keeping a
  band of central (ACS) columns; each teacher gets its own.

Masks use the layouts of `physics.masks` (centred; `(1, 1, W)` for columns, `(1, H, W)` for points)
and every function takes an explicit seed and its own `numpy.random.Generator`: global RNG state is
never read or changed. The `*_batch` helpers build one mask per batch item: `(N, 1, 1|H, W)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mrdistill.errors import MrdistillError, check_choice

SELECTIONS = ("gaussian", "uniform")


# ---------------------------------------------------------------- checks (one clear line each)


def check_rho(rho: float) -> None:
    if not 0 < rho < 1:
        raise MrdistillError(f"rho (fraction of Omega held out for the loss) must lie in (0, 1), got {rho}")


def check_factor(factor: float) -> None:
    if not np.isfinite(factor) or factor <= 1:
        raise MrdistillError(f"re-undersampling factor must be a number > 1, got {factor}")


def check_acs_block(block: Sequence[int], shape: tuple[int, int]) -> tuple[int, int]:
    """(ah, aw) of a central ACS block, which must fit inside the image (H, W)."""
    if len(block) != 2 or any(int(b) != b or b < 0 for b in block):
        raise MrdistillError(f"ACS block must be two non-negative integers, got {list(block)}")
    ah, aw = int(block[0]), int(block[1])
    if ah > shape[0] or aw > shape[1]:
        raise MrdistillError(f"ACS block {ah}x{aw} is larger than the image {shape[0]}x{shape[1]}")
    return ah, aw


def check_acs_lines(lines: int, width: int) -> int:
    if int(lines) != lines or lines < 0:
        raise MrdistillError(f"acs_lines must be a non-negative integer, got {lines}")
    if lines > width:
        raise MrdistillError(f"ACS band of {lines} lines is larger than the image width {width}")
    return int(lines)


# ---------------------------------------------------------------- small pure helpers


def centre_band(length: int, count: int) -> np.ndarray:
    """bool (length,) with `count` central entries set; covers the DC index length//2."""
    band = np.zeros(length, dtype=bool)
    start = (length - count + 1) // 2
    band[start:start + count] = True
    return band


def gaussian_density(shape: tuple[int, int]) -> np.ndarray:
    """float (H, W) separable Gaussian around (H//2, W//2) with std (n-1)/4 per axis (SSDU)."""
    axes = []
    for n in shape:
        offsets = np.arange(n) - n // 2
        axes.append(np.exp(-0.5 * (offsets / max((n - 1) / 4.0, 0.5)) ** 2))
    return np.outer(axes[0], axes[1])


def weighted_choice(rng: np.random.Generator, weights: np.ndarray, count: int) -> np.ndarray:
    """`count` indices drawn without replacement with probability proportional to `weights` (> 0),
    in one sort: Efraimidis-Spirakis keys log(u)/w."""
    keys = np.log(rng.random(weights.shape[0])) / weights
    return np.argsort(-keys, kind="stable")[:count]


def _points(mask: Tensor, shape: tuple[int, int]) -> np.ndarray:
    """A single mask broadcastable to (1, H, W) -> bool (H, W)."""
    m = mask.detach().cpu().float().numpy()
    try:
        return np.broadcast_to(m.reshape(m.shape[-2:]) if m.ndim >= 2 else m, shape) > 0.5
    except ValueError:
        raise MrdistillError(f"mask of shape {tuple(mask.shape)} does not fit k-space {shape}") from None


def _columns(mask: Tensor) -> np.ndarray:
    """bool (W,): columns in which the mask samples at least one point."""
    m = mask.detach().cpu().float().numpy()
    return (m.reshape(-1, m.shape[-1]) > 0.5).any(axis=0)


# ---------------------------------------------------------------- SSDU split


def ssdu_split(mask: Tensor, shape: tuple[int, int], rho: float, seed: int,
               selection: str = "gaussian", acs_block: Sequence[int] = (4, 4)) -> tuple[Tensor, Tensor]:
    """Partition Omega into (Theta, Lambda), float32 (1, H, W) each, disjoint, Theta + Lambda = Omega.

    mask: Omega, float/bool broadcastable to (1, H, W) (e.g. (1, 1, W) Cartesian or (1, H, W) 2-D).
    Lambda holds round(rho * |Omega|) points outside the central `acs_block`.
    """
    check_rho(rho)
    check_choice("SSDU selection", selection, SELECTIONS)
    ah, aw = check_acs_block(acs_block, shape)
    omega = _points(mask, shape)
    acs = np.outer(centre_band(shape[0], ah), centre_band(shape[1], aw))
    candidates = np.flatnonzero(omega & ~acs)
    count = int(round(rho * omega.sum()))
    if count < 1:
        raise MrdistillError(f"rho={rho} of {int(omega.sum())} acquired points leaves an empty loss set")
    if count > candidates.size:
        raise MrdistillError(f"rho={rho} asks for {count} loss points but only {candidates.size} "
                             f"acquired points lie outside the ACS block; lower rho or the block")
    rng = np.random.default_rng(seed)
    weights = gaussian_density(shape).ravel()[candidates] + 1e-6 if selection == "gaussian" \
        else np.ones(candidates.size)
    lam = np.zeros(shape, dtype=bool)
    lam.ravel()[candidates[weighted_choice(rng, weights, count)]] = True
    theta = omega & ~lam
    to_t = lambda a: torch.from_numpy(a.astype(np.float32))[None]  # noqa: E731
    return to_t(theta), to_t(lam)


def ssdu_split_batch(mask: Tensor, shape: tuple[int, int], rho: float, seeds: Sequence[int],
                     selection: str = "gaussian", acs_block: Sequence[int] = (4, 4)) -> tuple[Tensor, Tensor]:
    """One split per item: mask (N, 1, 1|H, W) -> (Theta, Lambda) float32 (N, 1, H, W) on mask's device."""
    pairs = [ssdu_split(mask[i], shape, rho, int(s), selection, acs_block) for i, s in enumerate(seeds)]
    theta = torch.stack([p[0] for p in pairs]).to(mask.device)
    lam = torch.stack([p[1] for p in pairs]).to(mask.device)
    return theta, lam


# ---------------------------------------------------------------- re-undersampling


def reundersample(mask: Tensor, factor: float, seed: int, acs_lines: int = 16) -> Tensor:
    """A further Cartesian undersampling of Omega: float32 mask of Omega's own shape, a subset of it.

    mask: Omega, float/bool (1, 1|H, W). Keeps round(n / factor) of Omega's n sampled columns: every
    sampled column inside the central band of `acs_lines`, plus columns drawn uniformly from the rest.
    """
    check_factor(factor)
    cols = _columns(mask)
    width = cols.shape[0]
    acs = centre_band(width, check_acs_lines(acs_lines, width)) & cols
    budget = max(int(round(cols.sum() / factor)), 1)
    if acs.sum() > budget:
        raise MrdistillError(f"{int(acs.sum())} acquired ACS lines exceed the {budget} lines a "
                             f"{factor}x re-undersampling of {int(cols.sum())} keeps; lower acs_lines")
    rng = np.random.default_rng(seed)
    rest = np.flatnonzero(cols & ~acs)
    keep = acs.copy()
    keep[rng.choice(rest, size=budget - int(acs.sum()), replace=False)] = True
    remask = torch.from_numpy(keep.astype(np.float32)).to(mask.device)
    return mask.to(torch.float32) * remask  # broadcast over rows keeps Omega's layout


def reundersample_batch(mask: Tensor, factor: float, seeds: Sequence[int], acs_lines: int = 16) -> Tensor:
    """One re-undersampling per item: mask (N, 1, 1|H, W) -> float32 of the same shape."""
    return torch.stack([reundersample(mask[i], factor, int(s), acs_lines) for i, s in enumerate(seeds)])
