"""Complex arithmetic on (real, imaginary) pairs and the centred orthonormal DFT as real matmuls.

Exported graphs hold no complex tensors and no FFT operator (ONNX's DFT and complex types are
where exporters and runtimes disagree), so every complex quantity is a pair of float32 tensors
`(re, im)` and the centred DFT along an axis of length n is a multiplication by a constant n x n
matrix. Row convention: for a row vector z, `fft1c(z) = z @ F` with `F[i] = fft1c(e_i)`; the same
matrix acts on columns as `F^T @ v`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mrdistill.physics.column_dc import fft1c_rows, ifft1c_rows

Pair = tuple[Tensor, Tensor]


def dft_matrix(n: int, inverse: bool = False) -> Pair:
    """The centred orthonormal (inverse) DFT of length n: float32 (n, n) real and imaginary parts.

    Built in float64 (rounded once to float32), so `z @ F` matches `fft1c(z)` to float32 rounding.
    """
    eye = torch.eye(n, dtype=torch.complex128)
    m = ifft1c_rows(eye) if inverse else fft1c_rows(eye)
    return m.real.float().contiguous(), m.imag.float().contiguous()


def cmul(a: Pair, b: Pair) -> Pair:
    """Elementwise complex product (broadcasting)."""
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def cconj_mul(a: Pair, b: Pair) -> Pair:
    """conj(a) * b, elementwise."""
    return a[0] * b[0] + a[1] * b[1], a[0] * b[1] - a[1] * b[0]


def rows_matmul(z: Pair, m: Pair) -> Pair:
    """z @ m along the last axis: z (..., W) pair, m (..., W, W') pair (batched matmul broadcasts)."""
    return z[0] @ m[0] - z[1] @ m[1], z[0] @ m[1] + z[1] @ m[0]


def real_rows_matmul(x: Tensor, m: Pair) -> Pair:
    """x @ m for a real x (two real matmuls instead of four)."""
    return x @ m[0], x @ m[1]


def cols_matmul(mt: Pair, z: Pair) -> Pair:
    """mt @ z along axis -2: mt (H', H) pair (the transposed DFT matrix), z (..., H, W) pair."""
    return mt[0] @ z[0] - mt[1] @ z[1], mt[0] @ z[1] + mt[1] @ z[0]


def transposed(m: Pair) -> Pair:
    """The transpose of each part, contiguous (a constant in the exported graph)."""
    return m[0].t().contiguous(), m[1].t().contiguous()


def batch_dot(a: Pair, b: Pair) -> Tensor:
    """Re <a, b> = sum Re(conj(a) b) over all non-batch dims: (N,)."""
    return (a[0] * b[0] + a[1] * b[1]).flatten(1).sum(dim=1)
