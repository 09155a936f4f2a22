"""The MRI forward operator A (coil weighting, centred FFT, sampling) and its adjoint A^H.

Shapes and dtypes (all complex64):
- image x: `(N, 1, H, W)` with coil maps, or `(N, C, H, W)` without (each channel its own coil).
- k-space y: `(N, C, H, W)`.
- mask M: float or bool, broadcastable to k-space: `(N, 1, 1, W)` (1-D Cartesian) or `(N, 1, H, W)`.
- coil maps S: `(N, C, H, W)` or None (single-coil).

A x = M * F(S x) and A^H y = sum_c conj(S_c) * F^H(M * y_c). F is the orthonormal centred FFT, so
A^H is the exact adjoint of A and A^H A is Hermitian positive semi-definite.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mrdistill.physics.fft import fft2c, ifft2c


def apply_mask(kspace: Tensor, mask: Tensor) -> Tensor:
    """complex (N, C, H, W) * broadcastable mask -> complex64 (N, C, H, W).

    `+ 0.0` turns the -0.0 that 0 * negative values produce into +0.0, as fastMRI does, so masked
    k-space is bit-identical however it was produced.
    """
    return kspace.to(torch.complex64) * mask.to(torch.float32) + 0.0


def expand_coils(image: Tensor, smaps: Tensor | None) -> Tensor:
    """S x: a coil-combined complex image (N, 1, H, W) -> the coil images complex64 (N, C, H, W)
    with coil maps `smaps` (N, C, H, W); without maps the image is returned as it is (already one
    image per coil, or single-coil)."""
    image = image.to(torch.complex64)
    return image if smaps is None else smaps.to(torch.complex64) * image


def forward_op(image: Tensor, mask: Tensor, smaps: Tensor | None = None) -> Tensor:
    """A x: complex image -> masked complex64 k-space (N, C, H, W).

    image: (N, 1, H, W) with `smaps` (N, C, H, W); (N, C, H, W) when `smaps` is None.
    """
    return apply_mask(fft2c(expand_coils(image, smaps)), mask)


def adjoint_op(kspace: Tensor, mask: Tensor, smaps: Tensor | None = None) -> Tensor:
    """A^H y: complex k-space (N, C, H, W) -> complex64 image.

    Returns (N, 1, H, W) (coil combination with conj(smaps)) when `smaps` is given, else (N, C, H, W).
    """
    coil_images = ifft2c(apply_mask(kspace, mask))
    return coil_images if smaps is None else combine_coils(coil_images, smaps)


def combine_coils(coil_images: Tensor, smaps: Tensor) -> Tensor:
    """Sensitivity-weighted combination sum_c conj(S_c) x_c: complex (..., C, H, W) -> (..., 1, H, W)."""
    return (smaps.to(torch.complex64).conj() * coil_images.to(torch.complex64)).sum(dim=-3, keepdim=True)


class MRIOperator:
    """A fixed acquisition: sampling mask and optional coil maps, with A, A^H and A^H A.

    mask: float/bool, broadcastable to (N, C, H, W) k-space. smaps: complex (N, C, H, W) or None.
    The operator holds tensors only (no parameters): build one per batch.
    """

    def __init__(self, mask: Tensor, smaps: Tensor | None = None) -> None:
        if mask.dim() != 4:
            raise ValueError(f"mask must be 4-D (N, 1, 1|H, W), got shape {tuple(mask.shape)}")
        if smaps is not None and smaps.dim() != 4:
            raise ValueError(f"smaps must be (N, C, H, W), got shape {tuple(smaps.shape)}")
        self.mask = mask.to(torch.float32)
        self.smaps = None if smaps is None else smaps.to(torch.complex64)

    def A(self, image: Tensor) -> Tensor:  # noqa: N802 - operator notation
        """complex (N, 1|C, H, W) image -> complex64 (N, C, H, W) masked k-space."""
        return forward_op(image, self.mask, self.smaps)

    def AH(self, kspace: Tensor) -> Tensor:  # noqa: N802 - operator notation
        """complex (N, C, H, W) k-space -> complex64 image (N, 1, H, W) with coil maps, else (N, C, H, W)."""
        return adjoint_op(kspace, self.mask, self.smaps)

    def AHA(self, image: Tensor) -> Tensor:  # noqa: N802 - operator notation
        """A^H A x (the normal operator); same shape as `image`, complex64."""
        return self.AH(self.A(image))

    def to(self, device: torch.device | str) -> MRIOperator:
        """A copy with mask and coil maps on `device`."""
        smaps = None if self.smaps is None else self.smaps.to(device)
        return MRIOperator(self.mask.to(device), smaps)
