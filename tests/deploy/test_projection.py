"""The real-matmul DFT and projections against the complex FFT code they replace."""

from __future__ import annotations

import pytest
import torch

from mrdistill.deploy.projection import ColumnProjection, GridProjection, from_complex, to_pair
from mrdistill.physics.column_dc import column_projection
from mrdistill.physics.fft import fft2c, ifft2c
from mrdistill.physics.masks import make_mask


def random_image(h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.complex(torch.randn(2, 3, h, w, generator=g), torch.randn(2, 3, h, w, generator=g))


@pytest.mark.parametrize("h, w", [(12, 16), (15, 9)])  # odd sides: the centring shifts differ
def test_dft_matmuls_equal_centred_fft(h, w):
    z = random_image(h, w)
    proj = GridProjection(h, w)
    for ours, ref in ((proj.fft2c(to_pair(from_complex(z))), fft2c(z)),
                      (proj.ifft2c(to_pair(from_complex(z))), ifft2c(z))):
        assert torch.allclose(torch.complex(*ours), ref, atol=1e-5)


@pytest.mark.parametrize("kind", ["kdmri", "gaussian2d"])
def test_projection_is_masked_kspace_projection(kind):
    h, w = 12, 16
    z = random_image(h, w)
    mask = make_mask(kind, (h, w), 3.0, seed=1)[None]
    proj = (ColumnProjection if kind == "kdmri" else GridProjection)(h, w)
    ops = proj.bind(mask)
    ref = ifft2c(fft2c(z) * mask)
    got = torch.complex(*proj.project(ops, z.real, z.imag))
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(proj.project_real(ops, z.real), ifft2c(fft2c(z.real) * mask).real, atol=1e-5)
    if kind == "kdmri":  # the same matrix as the fast path's, in float32
        g = torch.complex(ops[0], ops[1])[0, 0]
        assert torch.allclose(g, column_projection(mask.reshape(1, w))[0].to(torch.complex64), atol=1e-6)
