"""The two 2-D transforms of exported graphs against `physics.fft` (centred, orthonormal), on even
and odd sides (the rolls of `OperatorFFT` differ for odd lengths)."""

from __future__ import annotations

import pytest
import torch

from mrdistill.deploy.dft import FFT_KINDS, make_fft
from mrdistill.physics.fft import fft2c, ifft2c


@pytest.mark.parametrize("kind", list(FFT_KINDS))
@pytest.mark.parametrize("shape", [(8, 6), (7, 9)])
def test_transforms_match_fft2c(kind, shape):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, *shape, generator=g) + 1j * torch.randn(2, 3, *shape, generator=g)
    fft = make_fft(kind, *shape)
    for ours, reference in ((fft.fft2c, fft2c), (fft.ifft2c, ifft2c)):
        re, im = ours((z.real.contiguous(), z.imag.contiguous()))
        want = reference(z.to(torch.complex64))
        assert torch.allclose(torch.complex(re, im), want, atol=1e-5), (kind, shape)
