"""Complex arithmetic on (real, imaginary) pairs and the centred orthonormal 2-D DFT of exported
graphs, in two implementations with one interface (`fft2c(pair)`, `ifft2c(pair)`):

- `MatmulFFT`: the DFT along an axis of length n as a multiplication by a constant n x n matrix
  (row convention: for a row vector z, `fft1c(z) = z @ F` with `F[i] = fft1c(e_i)`; the same
  matrix acts on columns as `F^T @ v`). Only matmuls: runs in any ONNX runtime, O(n^2) per line.
- `OperatorFFT`: ONNX's `DFT` operator (opset 17) on the (..., H, W, 2) layout, with the centring
  as rolls and the orthonormal scaling as a constant; traced through `torch.fft` for TorchScript.

Exported graphs hold no complex tensors: every complex quantity is a pair of float32 tensors
`(re, im)`. Which implementation a graph uses is `FFT_IMPLEMENTATIONS`' choice per model family
(docs/deploy.md gives the measurements behind it).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mrdistill.physics.column_dc import fft1c_rows, ifft1c_rows

Pair = tuple[Tensor, Tensor]


def dft_matrix(n: int, inverse: bool = False) -> Pair:
    """The centred orthonormal (inverse) DFT of length n: float32 (n, n) real and imaginary parts.

    Built in float64 (rounded once to float32), so `z @ F` matches `fft1c(z)` to float32 rounding.
    """
    eye = torch.eye(n, dtype=torch.complex128)
    m = ifft1c_rows(eye) if inverse else fft1c_rows(eye)
    return m.real.float().contiguous(), m.imag.float().contiguous()


def to_channels(z: Pair) -> Tensor:
    """Pair (N, C, H, W) -> channels (N, 2C, H, W) [re..., im...] (`physics.fft.complex_to_channels`)."""
    return torch.cat([z[0], z[1]], dim=1)


def from_channels(x: Tensor) -> Pair:
    """Channels (N, 2C, H, W) -> pair (N, C, H, W) (`physics.fft.channels_to_complex`)."""
    re, im = x.chunk(2, dim=1)
    return re, im


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


class MatmulFFT(nn.Module):
    """The centred orthonormal 2-D DFT of an (H, W) grid as real matmuls (constant DFT matrices,
    graph buffers); pairs (..., H, W) in and out."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width
        fw, iw = dft_matrix(width), dft_matrix(width, inverse=True)
        fht, iht = transposed(dft_matrix(height)), transposed(dft_matrix(height, inverse=True))
        for name, pair in (("fw", fw), ("iw", iw), ("fht", fht), ("iht", iht)):
            self.register_buffer(f"{name}_re", pair[0], persistent=False)
            self.register_buffer(f"{name}_im", pair[1], persistent=False)

    def _m(self, name: str) -> Pair:
        return getattr(self, f"{name}_re"), getattr(self, f"{name}_im")

    def fft2c(self, z: Pair) -> Pair:
        """Centred orthonormal 2-D DFT of a pair (..., H, W)."""
        return cols_matmul(self._m("fht"), rows_matmul(z, self._m("fw")))

    def ifft2c(self, k: Pair) -> Pair:
        """Centred orthonormal inverse 2-D DFT of a pair (..., H, W)."""
        return cols_matmul(self._m("iht"), rows_matmul(k, self._m("iw")))


def torch_dft(x: Tensor, axis: int, inverse: bool) -> Tensor:
    """Unnormalised DFT (inverse: with 1/n, as ONNX's DFT) along `axis` of float (..., 2)
    (real/imaginary last) with `torch.fft`."""
    z = torch.view_as_complex(x.contiguous())
    transform = torch.fft.ifft if inverse else torch.fft.fft
    return torch.view_as_real(transform(z, dim=axis, norm="backward"))


def dft(x: Tensor, axis: int, inverse: bool) -> Tensor:
    """`torch_dft`, exported to ONNX as one `DFT` node (TorchScript traces `torch.fft` itself)."""
    return _DFT.apply(x, axis, inverse) if torch.onnx.is_in_onnx_export() else torch_dft(x, axis, inverse)


class _DFT(torch.autograd.Function):
    """`torch_dft` with its ONNX symbolic."""

    @staticmethod
    def forward(ctx, x: Tensor, axis: int, inverse: bool) -> Tensor:  # type: ignore[override]
        return torch_dft(x, axis, inverse)

    @staticmethod
    def symbolic(g, x, axis: int, inverse: bool):  # noqa: ANN001, ANN205 - the ONNX graph builder's types
        return g.op("DFT", x, axis_i=axis, inverse_i=int(inverse), onesided_i=0)


class OperatorFFT(nn.Module):
    """The centred orthonormal 2-D DFT of an (H, W) grid with ONNX's DFT operator: pairs
    (N, C, H, W) are stacked to (N, C, H, W, 2), ifftshift-ed (rolls), transformed along H and W,
    fftshift-ed and scaled, and split again."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width

    def _transform(self, z: Pair, inverse: bool) -> Pair:
        h, w = self.height, self.width
        x = torch.stack(z, dim=-1)
        x = torch.roll(x, shifts=(-(h // 2), -(w // 2)), dims=(2, 3))  # ifftshift over H, W
        x = dft(dft(x, 2, inverse), 3, inverse)
        x = torch.roll(x, shifts=(h // 2, w // 2), dims=(2, 3))  # fftshift
        # orthonormal: the forward DFT is unscaled, the inverse carries 1/(H W)
        x = x * (math.sqrt(h * w) if inverse else 1.0 / math.sqrt(h * w))
        return x[..., 0], x[..., 1]

    def fft2c(self, z: Pair) -> Pair:
        """Centred orthonormal 2-D DFT of a pair (N, C, H, W)."""
        return self._transform(z, inverse=False)

    def ifft2c(self, k: Pair) -> Pair:
        """Centred orthonormal inverse 2-D DFT of a pair (N, C, H, W)."""
        return self._transform(k, inverse=True)


FFT_KINDS = {"matmul": MatmulFFT, "operator": OperatorFFT}


def make_fft(kind: str, height: int, width: int) -> MatmulFFT | OperatorFFT:
    """The 2-D transform of an (H, W) grid: "matmul" (`MatmulFFT`) or "operator" (`OperatorFFT`)."""
    return FFT_KINDS[kind](height, width)
