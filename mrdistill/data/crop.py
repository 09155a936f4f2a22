"""Centre cropping to a target size (fastMRI scores 320x320 crops of 640x368 reconstructions)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from torch import Tensor

from mrdistill.errors import MrdistillError

ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)


def center_crop(x: ArrayT, shape: tuple[int, int]) -> ArrayT:
    """The central (h, w) window of the last two axes of `x` (tensor or array, any leading axes).

    The window starts at (H - h) // 2, as fastMRI's `center_crop` does, so crops of the same
    image by different code agree pixel for pixel. A crop larger than the image is an error.
    """
    h, w = int(shape[0]), int(shape[1])
    height, width = x.shape[-2], x.shape[-1]
    if h > height or w > width or h < 1 or w < 1:
        raise MrdistillError(f"cannot centre-crop an image of {height}x{width} to {h}x{w}")
    top, left = (height - h) // 2, (width - w) // 2
    return x[..., top:top + h, left:left + w]


def crop_like(x: Tensor, like: Tensor) -> Tensor:
    """`x` centre-cropped to the last two axes of `like` (no-op when they already agree)."""
    if tuple(x.shape[-2:]) == tuple(like.shape[-2:]):
        return x
    return center_crop(x, (like.shape[-2], like.shape[-1]))


def clamp_crop_size(size: tuple[int, int], image: tuple[int, int]) -> tuple[int, int]:
    """`size` limited to `image` per axis (fastMRI brain recon sizes can exceed the k-space width)."""
    return min(int(size[0]), int(image[0])), min(int(size[1]), int(image[1]))
