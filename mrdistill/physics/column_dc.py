"""Data consistency for 1-D column masks as one matmul per cascade (used by the fast inference path).

With the orthonormal centred FFT and a mask that samples whole k-space columns, the transform along
H cancels, so DC(x) = x @ (I - a G) + a b acting on image rows, where G = ifft1c(m * fft1c(I)),
b = ifft2c(m * k0) and a = 1 (hard DC) or lam / (1 + lam) (soft DC).
"""
from __future__ import annotations

import torch
from torch import Tensor

from mrdistill.physics.fft import float32_region


def fft1c_rows(x: Tensor) -> Tensor:
    """Centred orthonormal FFT along the last axis (1-D analogue of `fft2c`)."""
    x = torch.fft.ifftshift(x, dim=-1)
    return torch.fft.fftshift(torch.fft.fft(x, dim=-1, norm="ortho"), dim=-1)


def ifft1c_rows(x: Tensor) -> Tensor:
    """Centred orthonormal inverse FFT along the last axis; inverse of `fft1c_rows`."""
    x = torch.fft.ifftshift(x, dim=-1)
    return torch.fft.fftshift(torch.fft.ifft(x, dim=-1, norm="ortho"), dim=-1)


def column_projection(rows: Tensor) -> Tensor:
    """G = ifft1c(m * fft1c(I)) for each column mask m: complex128 (M, W, W).

    rows: float (M, W) masks over k-space columns. For an image row z (length W),
    z @ G[i] = ifft1c(m_i * fft1c(z)); with a column mask the H-direction FFT of `fft2c` cancels, so
    this is exactly the masked-k-space projection of the DC step. Built in float64 for accuracy.
    """
    width = rows.shape[-1]
    eye = torch.eye(width, dtype=torch.complex128)
    return ifft1c_rows(rows.to(torch.float64)[:, None, :] * fft1c_rows(eye))


def column_dc_operators(rows: Tensor, scales: list[float], complex_input: bool) -> list[Tensor]:
    """Per cascade the DC matrix I - a G: float32 (M, W, W) (real mode, Re G) or complex64 (M, W, W).

    rows: float (M, W) column masks; scales: a per cascade. Cascades with the same a share one tensor.
    """
    g = column_projection(rows)
    g = g if complex_input else g.real
    eye = torch.eye(g.shape[-1], dtype=g.dtype)
    dtype = torch.complex64 if complex_input else torch.float32
    by_scale = {a: (eye - a * g).to(dtype) for a in set(scales)}
    return [by_scale[a] for a in scales]


def column_dc(x: Tensor, op: Tensor, b: Tensor, complex_input: bool) -> Tensor:
    """DC for a column mask as one (batched) matmul: x @ (I - a G) + a b, on the network tensor.

    x: float (n, C_net, H, W), C_net = 1 (real mode; `op` real) or 2 (re, im; `op` complex);
    op: (1|n, W, W) from `column_dc_operators`; b: a * ifft2c(m k0), (n, 1, H, W): its real part
    float32 in real mode, complex64 in complex mode. Returns float32 (n, C_net, H, W), also under
    autocast (the matmul is the DC step: it stays in float32).
    """
    n, c, h, w = x.shape
    with float32_region(x.device):
        if complex_input:
            z = torch.complex(x[:, 0].float(), x[:, 1].float())
            z = _rows_matmul(z, op, b.view(n, h, w))
            return torch.stack([z.real, z.imag], dim=1)
        return _rows_matmul(x.reshape(n, h, w).float(), op, b.reshape(n, h, w)).view(n, c, h, w)


def _rows_matmul(z: Tensor, op: Tensor, b: Tensor) -> Tensor:
    """b + z @ op for z, b (n, H, W) with op (1, W, W) (one 2-D matmul) or (n, W, W) (batched)."""
    n, h, w = z.shape
    if op.shape[0] == 1:
        return torch.addmm(b.reshape(n * h, w), z.reshape(n * h, w), op[0]).view(n, h, w)
    return torch.baddbmm(b, z, op)


def column_rows(mask: Tensor, n: int, width: int) -> Tensor | None:
    """Mask rows float (1|n, W) if `mask` is a 1-D column mask broadcastable to (n, 1, 1, W)."""
    try:
        shape = torch.broadcast_shapes(mask.shape, (n, 1, 1, width))
    except RuntimeError:
        return None
    if shape != (n, 1, 1, width):
        return None
    rows = torch.broadcast_to(mask.to(torch.float32), shape).reshape(n, width)
    return rows[:1] if bool((rows == rows[:1]).all()) else rows
