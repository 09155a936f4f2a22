"""Data consistency (hard and soft) and a batched conjugate-gradient solver.

All functions are pure, differentiable and run in float32/complex64 even inside an autocast region
(FFTs and the DC blend lose too much accuracy in half precision).

Shapes: k-space complex64 (N, C, H, W); masks float/bool broadcastable to it ((N, 1, 1, W) or
(N, 1, H, W)), 1 = sampled.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mrdistill.physics.fft import (fft2c, float32_region, ifft2c, image_to_network,
                                   network_to_image)
from mrdistill.physics.operators import combine_coils, expand_coils


def hard_dc(k_pred: Tensor, k0: Tensor, mask: Tensor) -> Tensor:
    """Replace predicted k-space by the acquired k-space where sampled: (1-M) k_pred + M k0.

    k_pred, k0: complex (N, C, H, W); mask: broadcastable float/bool. Returns complex64 (N, C, H, W).
    With a 0/1 mask the sampled entries equal k0 exactly.
    """
    with float32_region(k_pred.device):
        m = mask.to(torch.float32)
        return (1.0 - m) * k_pred.to(torch.complex64) + m * k0.to(torch.complex64)


def soft_dc(k_pred: Tensor, k0: Tensor, mask: Tensor, lam: Tensor) -> Tensor:
    """Noise-aware DC (Schlemper): (1-M) k_pred + M (k_pred + lam k0) / (1 + lam).

    lam: non-negative real scalar tensor (typically a learnable parameter); lam=0 keeps the
    prediction, lam -> infinity tends to `hard_dc`. Returns complex64 (N, C, H, W).
    """
    with float32_region(k_pred.device):
        m = mask.to(torch.float32)
        lam = lam.to(torch.float32)
        k_pred = k_pred.to(torch.complex64)
        blended = (k_pred + lam * k0.to(torch.complex64)) / (1.0 + lam)
        return (1.0 - m) * k_pred + m * blended


def dc_network_image(
    x: Tensor,
    k0: Tensor,
    mask: Tensor,
    complex_input: bool,
    lam: Tensor | None = None,
    smaps: Tensor | None = None,
) -> Tensor:
    """DC step on a network's real tensor: to image, FFT, hard (lam None) or soft DC, IFFT, back.

    x: float (N, C_net, H, W), C_net = 2C (complex_input) or C (real-image mode);
    k0: complex64 (N, C, H, W) acquired k-space; mask: broadcastable.
    Returns float32 (N, C_net, H, W). In real-image mode the real part is kept (as KD-MRI does), so
    sampled k-space is reproduced exactly only where the mask is mirror-symmetric (k and -k both
    sampled); elsewhere the result mixes k0 with the prediction's Hermitian partner.
    With coil maps `smaps` complex (N, C, H, W) (complex_input, x one combined image (N, 2, H, W)),
    DC acts on every coil's k-space: S^H F^H dc(F S x, k0), so the network's combined image is
    kept consistent with all C coils (parallel imaging) rather than with their combination.
    """
    with float32_region(x.device):
        k_pred = fft2c(expand_coils(network_to_image(x, complex_input), smaps))
        k_dc = hard_dc(k_pred, k0, mask) if lam is None else soft_dc(k_pred, k0, mask, lam)
        coil_images = ifft2c(k_dc)
        image = coil_images if smaps is None else combine_coils(coil_images, smaps)
        return image_to_network(image, complex_input)


def _batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample real part of <a, b> = sum conj(a) b over all non-batch dims: (N,) real."""
    return (a.conj() * b).real.flatten(1).sum(dim=1) if a.is_complex() else (a * b).flatten(1).sum(dim=1)


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den with 0 where den == 0; the double `where` keeps gradients finite (no 0/0 anywhere)."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


def _per_sample(scalar: Tensor, like: Tensor) -> Tensor:
    """(N,) -> (N, 1, ..., 1) to broadcast against `like`."""
    return scalar.reshape(-1, *([1] * (like.dim() - 1)))


def conjugate_gradient(
    AHA: Callable[[Tensor], Tensor],  # noqa: N803 - operator notation
    rhs: Tensor,
    x0: Tensor | None = None,
    iters: int = 10,
    tol: float = 0.0,
) -> Tensor:
    """Solve AHA(x) = rhs by conjugate gradients, independently for every batch element.

    AHA: Hermitian positive-definite linear map on tensors shaped like `rhs` (e.g.
    `lambda v: op.AHA(v) + lam * v`). rhs: (N, ...) complex or real; x0: start (default zeros).
    iters: maximum iterations. tol: stop early once every sample has ||r|| <= tol * ||rhs||
    (0 = always run `iters`; a positive tol costs one host sync per iteration).
    Differentiable through all iterations (plain torch ops). Returns x shaped like `rhs`.
    Low-precision inputs are promoted to float32/complex64.
    """
    with float32_region(rhs.device):
        if rhs.dtype in (torch.float16, torch.bfloat16):
            rhs = rhs.float()
        elif rhs.dtype == torch.complex32:
            rhs = rhs.to(torch.complex64)
        if x0 is None:
            x = torch.zeros_like(rhs)
            r = rhs
        else:
            x = x0.to(rhs.dtype)
            r = rhs - AHA(x)
        p = r
        rs = _batch_dot(r, r)
        threshold = (tol * tol) * _batch_dot(rhs, rhs)
        for _ in range(iters):
            if tol > 0 and bool((rs <= threshold).all()):
                break
            ap = AHA(p)
            alpha = _per_sample(safe_div(rs, _batch_dot(p, ap)), rhs)
            x = x + alpha * p
            r = r - alpha * ap
            rs_new = _batch_dot(r, r)
            p = r + _per_sample(safe_div(rs_new, rs), rhs) * p
            rs = rs_new
        return x
