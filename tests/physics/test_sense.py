"""CG-SENSE (and sigpy's L1-wavelet): the SENSE operator's adjoint, and recovery with known maps."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mrdistill.data.coils import simulate_coil_maps
from mrdistill.physics.fft import fft2c, ifft2c
from mrdistill.physics.masks import make_mask
from mrdistill.physics.operators import MRIOperator
from mrdistill.physics.sense import SenseSettings, cg_sense, l1_wavelet
from tests.data.format_fixtures import phantom


def _problem(coils: int, acceleration: float, n: int = 32):
    """(truth complex (1, 1, n, n), masked k-space, 1-D equispaced mask, exact maps)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    truth = torch.from_numpy(phantom(1, n, n)[0]).to(torch.complex64) * torch.polar(torch.ones(n, n), 0.5 * xx + 0.3 * yy)
    maps = simulate_coil_maps(coils, (n, n))[None]
    mask = make_mask("equispaced_fraction", (n, n), acceleration, seed=0, center_fraction=0.125).reshape(1, 1, 1, n)
    kspace = fft2c(maps * truth[None, None]) * mask
    return truth[None, None], kspace, mask, maps


def _nrmse(x: torch.Tensor, truth: torch.Tensor) -> float:
    return float((x.abs() - truth.abs()).norm() / truth.abs().norm())


def test_sense_operator_is_adjoint():
    g = torch.Generator().manual_seed(0)
    _, _, mask, maps = _problem(6, 2)
    x = torch.complex(torch.randn(1, 1, 32, 32, generator=g), torch.randn(1, 1, 32, 32, generator=g))
    y = torch.complex(torch.randn(1, 6, 32, 32, generator=g), torch.randn(1, 6, 32, 32, generator=g))
    op = MRIOperator(mask, maps)
    lhs, rhs = (op.A(x).conj() * y).sum(), (x.conj() * op.AH(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-4, atol=1e-3)


def test_cg_sense_recovers_what_zero_filled_aliases():
    truth, kspace, mask, maps = _problem(8, 2)
    zero_filled = (maps.conj() * ifft2c(kspace)).sum(1, keepdim=True)
    x = cg_sense(kspace, mask, maps, SenseSettings(lam=1e-4, iters=50, tol=0.0))
    assert x.shape == (1, 1, 32, 32) and x.dtype == torch.complex64
    zf_err, sense_err = _nrmse(zero_filled, truth), _nrmse(x, truth)
    assert zf_err > 0.15 and sense_err < 0.01, (zf_err, sense_err)


def test_cg_sense_with_one_coil_is_scaled_zero_filled():
    _, kspace, mask, _ = _problem(1, 4)
    ones = torch.ones(1, 1, 32, 32, dtype=torch.complex64)
    x = cg_sense(kspace[:, :1], mask, ones, SenseSettings(lam=0.25, iters=5))
    torch.testing.assert_close(x, ifft2c(kspace[:, :1]) / 1.25, atol=1e-5, rtol=1e-4)


def test_bad_settings_are_refused():
    truth, kspace, mask, maps = _problem(2, 2)
    with pytest.raises(ValueError, match="lam >= 0"):
        cg_sense(kspace, mask, maps, SenseSettings(lam=-1.0))


@pytest.mark.skipif(importlib.util.find_spec("sigpy") is None, reason="sigpy not installed")
def test_l1_wavelet_beats_zero_filled():
    truth, kspace, mask, maps = _problem(4, 3)
    zero_filled = (maps.conj() * ifft2c(kspace)).sum(1, keepdim=True)
    x = l1_wavelet(kspace, mask, maps, lam=1e-4, iters=30)
    assert x.shape == (1, 1, 32, 32)
    assert _nrmse(x, truth) < 0.5 * _nrmse(zero_filled, truth)
