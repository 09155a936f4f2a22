"""Centred orthonormal 2-D FFTs and the one pair of helpers that convert complex <-> channels.

Conventions: complex data are `complex64 (N, C, H, W)` (C = coils); networks see real tensors
`(N, 2C, H, W)` laid out as `[real_0..real_{C-1}, imag_0..imag_{C-1}]`, or `(N, 1, H, W)` in the
real-image mode. FFTs always run in float32/complex64, even under autocast.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import Tensor


def float32_region(device: torch.device) -> AbstractContextManager:
    """A region in which autocast is off for `device`: FFTs and data consistency run there, on
    inputs cast up to float32/complex64, whatever precision the network trains in."""
    return torch.autocast(device_type=device.type, enabled=False)


def fft2c(image: Tensor) -> Tensor:
    """Centred orthonormal FFT over the last two axes.

    image: complex (..., H, W) -> kspace: complex64 (..., H, W), DC at (H//2, W//2).
    """
    x = torch.fft.ifftshift(image.to(torch.complex64), dim=(-2, -1))
    x = torch.fft.fft2(x, norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def ifft2c(kspace: Tensor) -> Tensor:
    """Centred orthonormal inverse FFT over the last two axes; exact inverse of `fft2c`.

    kspace: complex (..., H, W) -> image: complex64 (..., H, W).
    """
    x = torch.fft.ifftshift(kspace.to(torch.complex64), dim=(-2, -1))
    x = torch.fft.ifft2(x, norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def complex_to_channels(x: Tensor) -> Tensor:
    """complex (N, C, H, W) -> float32 (N, 2C, H, W) as [real..., imag...]."""
    return torch.cat([x.real, x.imag], dim=1).float()


def channels_to_complex(x: Tensor) -> Tensor:
    """float (N, 2C, H, W) -> complex64 (N, C, H, W); inverse of `complex_to_channels`."""
    if x.shape[1] % 2:
        raise ValueError(f"expected an even number of channels, got {x.shape[1]}")
    re, im = x.float().chunk(2, dim=1)
    return torch.complex(re, im)


def image_to_network(image: Tensor, complex_input: bool) -> Tensor:
    """complex (N, C, H, W) -> the network's real tensor.

    complex_input=True: (N, 2C, H, W); False (real-image mode, KD-MRI): (N, C, H, W) real part.
    """
    return complex_to_channels(image) if complex_input else image.real.float()


def network_to_image(x: Tensor, complex_input: bool) -> Tensor:
    """The network's real tensor -> complex64 (N, C, H, W); inverse of `image_to_network`."""
    return channels_to_complex(x) if complex_input else x.float().to(torch.complex64)


def magnitude(x: Tensor) -> Tensor:
    """The image that is scored: float (N, 1, H, W).

    x: float (N, 1, H, W) real image (returned as is), or float (N, 2C, H, W) channels
    (root-sum-of-squares over coils of the complex magnitude).
    """
    if x.shape[1] == 1:
        return x
    re, im = x.chunk(2, dim=1)
    return torch.sqrt((re.square() + im.square()).sum(dim=1, keepdim=True) + 1e-12)
