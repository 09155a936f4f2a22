"""Training-slice augmentation that matches acquisition: small pure functions on the image.

Everything here acts on the ground-truth magnitude image float32 (H, W) *before* its k-space is
simulated (`simulate.simulate_kspace` then adds the smooth phase and the k-space noise drawn here),
so the undersampling mask and data consistency remain exact for the augmented slice. Parameters
are drawn by `draw_params` from a generator seeded by the caller (the run seed, the slice and the
epoch): no global RNG state is read or changed. Configured by `config.AugmentConfig`
(`data.augment`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mrdistill.config.data import AugmentConfig


@dataclass(frozen=True)
class AugmentParams:
    """One slice's draw: what `augment_image` does, and the noise and phase seed for simulation."""

    flip_lr: bool = False
    flip_ud: bool = False
    quarter_turns: int = 0  # counter-clockwise multiples of 90 degrees
    fov_scale: float = 1.0  # > 1 zooms in on a window, < 1 shrinks into a padded field of view
    offset: tuple[float, float] = (0.5, 0.5)  # where the window / the shrunk image sits, per axis in [0, 1]
    intensity: float = 1.0
    gamma: float = 1.0
    noise_std: float = 0.0  # k-space noise std per real/imaginary component (image max 1)
    seed: int = 0  # seeds the smooth phase and the noise of this draw


def _uniform(rng: np.random.Generator, bounds: list[float]) -> float:
    low, high = float(bounds[0]), float(bounds[1])
    return low if low == high else float(rng.uniform(low, high))


def draw_params(cfg: AugmentConfig, seed: int) -> AugmentParams:
    """The augmentation of one slice, drawn from `np.random.default_rng(seed)` alone."""
    rng = np.random.default_rng(seed)
    flips = rng.integers(0, 2, size=2) if cfg.flip else (0, 0)
    turns = int(rng.integers(0, 4)) if cfg.rot90 else 0
    # log-uniform scale: zooming in by 2 is as likely as zooming out by 2 in a symmetric range
    lo, hi = (math.log(v) for v in cfg.fov_scale)
    scale = math.exp(_uniform(rng, [lo, hi]))
    offset = (float(rng.uniform()), float(rng.uniform()))
    return AugmentParams(bool(flips[0]), bool(flips[1]), turns, scale, offset,
                         _uniform(rng, cfg.intensity), _uniform(rng, cfg.gamma),
                         _uniform(rng, cfg.noise_std), int(rng.integers(0, 2**31 - 1)))


def flip_rotate(image: Tensor, flip_lr: bool, flip_ud: bool, quarter_turns: int) -> Tensor:
    """float (..., H, W) flipped then rotated by `quarter_turns` x 90 degrees (H == W keeps the shape)."""
    dims = [d for d, on in ((-1, flip_lr), (-2, flip_ud)) if on]
    out = image.flip(dims) if dims else image
    return torch.rot90(out, quarter_turns % 4, dims=(-2, -1))


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """float32 (H, W) -> (h, w), bilinear, anti-aliased when shrinking."""
    if tuple(image.shape) == size:
        return image
    shrink = size[0] < image.shape[0] or size[1] < image.shape[1]
    return F.interpolate(image[None, None], size=size, mode="bilinear", antialias=shrink,
                         align_corners=False)[0, 0]


def rescale_fov(image: Tensor, scale: float, offset: tuple[float, float] = (0.5, 0.5)) -> Tensor:
    """float32 (H, W) -> (H, W) seen with a field of view `1/scale` times as large.

    scale > 1: a window of (H/scale, W/scale) pixels, placed at `offset` (fractions of the free
    room per axis), resized back to (H, W): a crop in which the anatomy fills the field of view.
    scale < 1: the image shrunk to (H*scale, W*scale) and placed at `offset` in a zero (H, W)
    field. Values stay >= 0.
    """
    h, w = image.shape
    if scale >= 1:
        ch, cw = max(1, round(h / scale)), max(1, round(w / scale))
        top, left = round(offset[0] * (h - ch)), round(offset[1] * (w - cw))
        out = _resize(image[top:top + ch, left:left + cw], (h, w))
    else:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = round(offset[0] * (h - sh)), round(offset[1] * (w - sw))
        out = torch.zeros_like(image)
        out[top:top + sh, left:left + sw] = _resize(image, (sh, sw))
    return out.clamp_min(0)


def adjust_intensity(image: Tensor, scale: float, gamma: float) -> Tensor:
    """float32 (H, W) >= 0 -> `scale` x (image / max) ** gamma: a contrast curve, then a global
    scale (the result's max is `scale`; an all-zero image stays zero)."""
    peak = float(image.max())
    if peak <= 0:
        return image.clone()
    unit = image / peak
    return (unit if gamma == 1.0 else unit.pow(gamma)) * scale


def augment_image(image: Tensor, params: AugmentParams) -> Tensor:
    """float32 (H, W) >= 0 -> float32 (H, W): flips and rotation, field-of-view scale, intensity.

    The noise and the phase of `params` belong to the k-space simulation (`simulate_kspace`).
    """
    out = flip_rotate(image, params.flip_lr, params.flip_ud, params.quarter_turns)
    if params.fov_scale != 1.0:
        out = rescale_fov(out, params.fov_scale, params.offset)
    return adjust_intensity(out, params.intensity, params.gamma).contiguous()


def combined_noise_std(base: float, extra: float) -> float:
    """The std of the sum of two independent zero-mean Gaussians of stds `base` and `extra`."""
    return math.hypot(base, extra)
