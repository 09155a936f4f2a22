"""The masked-k-space projection P(z) = ifft2c(w * fft2c(z)) as real matmuls, in two forms.

Every data-consistency step of the exportable models is built from P and the zero-filled image
b = ifft2c(w * k0): hard/soft DC is x + a (b - P(x)) with a = 1 or lam / (1 + lam), CHPNet's data
gradient is P(x) - ifft2c(y), and MoDL's normal operator is sum_c conj(S_c) P(S_c x).

- `ColumnProjection` (1-D column masks, mask float (1|N, 1, 1, W)): the transform along H cancels,
  so P acts on image rows as one matrix G = F diag(w) F^-1 per mask, built inside the graph from
  the mask input (two W x W complex matmuls per distinct mask) and applied as z @ G
  (`physics.column_dc` is the same algebra in complex arithmetic). No DFT along H is needed.
- `GridProjection` (2-D masks, mask float (1|N, 1, H, W)): a centred DFT as matmuls along W then H,
  the mask, and the inverse the same way (four complex matmuls per call).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mrdistill.deploy.dft import MatmulFFT, Pair, cols_matmul, real_rows_matmul, rows_matmul

DC_FORMS = ("column", "grid")


class Projection(MatmulFFT):
    """Shared part: the DFT matrices of an (H, W) grid (graph constants) and the 2-D transforms."""

    form = ""

    def bind(self, weight: Tensor) -> tuple[Tensor, ...]:
        """What `project` needs for this mask (computed once per forward)."""
        raise NotImplementedError

    def project(self, ops: tuple[Tensor, ...], re: Tensor, im: Tensor | None) -> Pair:
        """P(z) for z = re + i im (im None: a real image, cheaper), z (N, C, H, W) -> pair."""
        raise NotImplementedError

    def project_real(self, ops: tuple[Tensor, ...], re: Tensor) -> Tensor:
        """Re P(z) for a real z (N, C, H, W): what the real-image mode keeps after DC."""
        raise NotImplementedError


class ColumnProjection(Projection):
    """P for 1-D column masks as z @ G on image rows (see the module docstring)."""

    form = "column"

    def bind(self, weight: Tensor) -> tuple[Tensor, ...]:
        """weight float (Nm, 1, 1, W) -> G = F diag(w) F^-1 as real and imaginary (Nm, 1, W, W)."""
        fw_re, fw_im = self._m("fw")
        return rows_matmul((fw_re * weight, fw_im * weight), self._m("iw"))

    def project(self, ops: tuple[Tensor, ...], re: Tensor, im: Tensor | None) -> Pair:
        g = (ops[0], ops[1])
        return real_rows_matmul(re, g) if im is None else rows_matmul((re, im), g)

    def project_real(self, ops: tuple[Tensor, ...], re: Tensor) -> Tensor:
        return re @ ops[0]


class GridProjection(Projection):
    """P for any mask (2-D or broadcast 1-D) as DFT matmuls along both axes."""

    form = "grid"

    def bind(self, weight: Tensor) -> tuple[Tensor, ...]:
        """weight float (Nm, 1, H, W) (or (Nm, 1, 1, W)), used as is."""
        return (weight,)

    def project(self, ops: tuple[Tensor, ...], re: Tensor, im: Tensor | None) -> Pair:
        if im is None:
            half = real_rows_matmul(re, self._m("fw"))
        else:
            half = rows_matmul((re, im), self._m("fw"))
        k = cols_matmul(self._m("fht"), half)
        w = ops[0]
        return self.ifft2c((k[0] * w, k[1] * w))

    def project_real(self, ops: tuple[Tensor, ...], re: Tensor) -> Tensor:
        k = cols_matmul(self._m("fht"), real_rows_matmul(re, self._m("fw")))
        t = rows_matmul((k[0] * ops[0], k[1] * ops[0]), self._m("iw"))
        iht_re, iht_im = self._m("iht")
        return iht_re @ t[0] - iht_im @ t[1]  # the real part of the last (column) transform only


def make_projection(form: str, height: int, width: int) -> Projection:
    """`ColumnProjection` ("column") or `GridProjection` ("grid") for an (H, W) grid."""
    return {"column": ColumnProjection, "grid": GridProjection}[form](height, width)


def to_pair(x: Tensor) -> Pair:
    """float (..., 2) (real/imag last, the exported graph's k-space layout) -> pair."""
    return x[..., 0], x[..., 1]


def from_complex(z: Tensor) -> Tensor:
    """complex (...) -> float32 (..., 2): how callers build the graph's inputs."""
    return torch.view_as_real(z.to(torch.complex64)).contiguous()
