"""Data consistency and conjugate gradients."""

from __future__ import annotations

import torch

from mrdistill.physics.consistency import conjugate_gradient, dc_network_image, hard_dc, soft_dc
from mrdistill.physics.fft import complex_to_channels, fft2c
from mrdistill.physics.masks import make_mask
from mrdistill.physics.operators import MRIOperator


def _randc(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(*shape, generator=g, dtype=dtype)
    return torch.complex(real, torch.randn(*shape, generator=g, dtype=dtype))


def _column_mask(w: int, seed: int = 0) -> torch.Tensor:
    return make_mask("kdmri", (8, w), 4, seed=seed, center_lines=2).reshape(1, 1, 1, w)


def _mirror_symmetric(mask: torch.Tensor) -> torch.Tensor:
    """Also sample -k for every sampled k (centred layout, even W: column j <-> (W - j) % W)."""
    w = mask.shape[-1]
    mirror = torch.tensor([(w - j) % w for j in range(w)])
    return torch.maximum(mask, mask[..., mirror])


def test_hard_dc_keeps_sampled_and_prediction_elsewhere() -> None:
    k_pred, k0, mask = _randc(2, 3, 8, 12, seed=1), _randc(2, 3, 8, 12, seed=2), _column_mask(12)
    out = hard_dc(k_pred, k0, mask)
    sampled = mask.bool().expand_as(out)
    assert torch.equal(out[sampled], k0[sampled])
    assert torch.equal(out[~sampled], k_pred[~sampled])


def test_soft_dc_limits() -> None:
    k_pred, k0, mask = _randc(1, 2, 8, 8, seed=3), _randc(1, 2, 8, 8, seed=4), _column_mask(8)
    assert torch.allclose(soft_dc(k_pred, k0, mask, torch.tensor(0.0)), k_pred)
    big = soft_dc(k_pred, k0, mask, torch.tensor(1e7))
    assert torch.allclose(big, hard_dc(k_pred, k0, mask), atol=1e-5)
    half = soft_dc(k_pred, k0, mask, torch.tensor(1.0))
    sampled = mask.bool().expand_as(half)
    assert torch.allclose(half[sampled], ((k_pred + k0) / 2)[sampled])


def test_soft_dc_lambda_is_learnable() -> None:
    lam = torch.tensor(0.5, requires_grad=True)
    out = soft_dc(_randc(1, 1, 4, 4, seed=5), _randc(1, 1, 4, 4, seed=6), torch.ones(1, 1, 1, 4), lam)
    out.abs().sum().backward()
    assert lam.grad is not None and torch.isfinite(lam.grad)


def test_dc_network_image_complex_mode_is_exact_on_sampled_points() -> None:
    mask = _column_mask(12, seed=7)
    k0 = fft2c(_randc(2, 2, 8, 12, seed=8)) * mask
    x = torch.randn(2, 4, 8, 12)
    out = dc_network_image(x, k0, mask, complex_input=True)
    assert out.shape == x.shape and out.dtype == torch.float32
    k_out = fft2c(torch.complex(out[:, :2], out[:, 2:]))
    sampled = mask.bool().expand_as(k_out)
    assert torch.allclose(k_out[sampled], k0[sampled], atol=1e-5)


def test_dc_network_image_real_mode_with_symmetric_mask() -> None:
    # Real mode keeps Re(image); that preserves k0 exactly when k0 is from a real image and the
    # mask samples k and -k together (Hermitian symmetry).
    mask = _mirror_symmetric(_column_mask(12, seed=9))
    k0 = fft2c(torch.randn(1, 1, 8, 12)) * mask
    out = dc_network_image(torch.randn(1, 1, 8, 12), k0, mask, complex_input=False)
    assert out.shape == (1, 1, 8, 12) and out.dtype == torch.float32
    k_out = fft2c(out)
    sampled = mask.bool().expand_as(k_out)
    assert torch.allclose(k_out[sampled], k0[sampled], atol=1e-5)


def test_dc_network_image_real_mode_asymmetric_mask_averages_partners() -> None:
    # Documented KD-MRI behaviour: where only k (not -k) is sampled, Re() leaves (k0 + k_pred) / 2.
    w = 12
    mask = torch.zeros(1, 1, 1, w)
    mask[..., [w // 2, 2]] = 1.0  # DC and a column whose mirror (10) is not sampled
    image, x = torch.randn(1, 1, 8, w), torch.randn(1, 1, 8, w)
    k0 = fft2c(image) * mask
    k_out = fft2c(dc_network_image(x, k0, mask, complex_input=False))
    assert torch.allclose(k_out[..., w // 2], k0[..., w // 2], atol=1e-5)
    assert torch.allclose(k_out[..., 2], (k0[..., 2] + fft2c(x)[..., 2]) / 2, atol=1e-5)


def test_dc_network_image_soft_and_autocast_stay_fp32() -> None:
    mask = _column_mask(8, seed=10)
    k0 = fft2c(_randc(1, 1, 8, 8, seed=11)) * mask
    x = complex_to_channels(_randc(1, 1, 8, 8, seed=12))
    reference = dc_network_image(x, k0, mask, True, lam=torch.tensor(2.0))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = dc_network_image(x, k0, mask, True, lam=torch.tensor(2.0))
    assert out.dtype == torch.float32 and torch.allclose(out, reference, atol=1e-6)


def test_cg_matches_direct_solve_dense() -> None:
    n, d, lam = 3, 6, 0.1
    a = _randc(n, d, d, seed=13, dtype=torch.float64)
    normal = a.mH @ a + lam * torch.eye(d, dtype=a.dtype)
    rhs = _randc(n, d, seed=14, dtype=torch.float64)
    x = conjugate_gradient(lambda v: (normal @ v.unsqueeze(-1)).squeeze(-1), rhs, iters=3 * d)
    assert torch.allclose(x, torch.linalg.solve(normal, rhs), atol=1e-8)


def test_cg_matches_direct_solve_mri_operator() -> None:
    # (A^H A + lam I) x = rhs on 8x8 images with 2 coils; dense reference built column by column.
    h = w = 8
    lam = 0.05
    mask = _column_mask(w, seed=15)
    smaps = _randc(1, 2, h, w, seed=16)
    op = MRIOperator(mask, smaps)

    def normal(v: torch.Tensor) -> torch.Tensor:
        return op.AHA(v) + lam * v

    basis = torch.eye(h * w, dtype=torch.complex64).reshape(h * w, 1, h, w)
    dense = normal(basis).reshape(h * w, h * w).T.to(torch.complex128)
    rhs = _randc(1, 1, h, w, seed=17)
    x = conjugate_gradient(normal, rhs, iters=60)
    direct = torch.linalg.solve(dense, rhs.reshape(-1).to(torch.complex128)).to(torch.complex64)
    assert torch.allclose(x.reshape(-1), direct, atol=1e-3, rtol=1e-3)


def test_cg_is_per_sample_and_handles_zero_rhs() -> None:
    d = 5
    diag = torch.stack([torch.linspace(1, 2, d), torch.linspace(1, 50, d)]).to(torch.complex64)
    rhs = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.complex64)
    x = conjugate_gradient(lambda v: diag * v, rhs, iters=d)
    assert torch.isfinite(torch.view_as_real(x)).all()
    assert torch.allclose(x, rhs / diag, atol=1e-5)


def test_cg_warm_start_and_tolerance() -> None:
    diag = torch.linspace(1, 4, 6, dtype=torch.float64).reshape(1, 6)
    rhs = torch.ones(1, 6, dtype=torch.float64)
    calls = []

    def op(v: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return diag * v

    exact = rhs / diag
    x = conjugate_gradient(op, rhs, x0=exact, iters=10, tol=1e-6)
    assert torch.allclose(x, exact) and len(calls) == 1  # only the initial residual


def test_cg_is_differentiable() -> None:
    g = torch.Generator().manual_seed(18)
    m = torch.randn(4, 4, generator=g, dtype=torch.float64)
    spd = m @ m.T + 4 * torch.eye(4, dtype=torch.float64)
    rhs = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda b: conjugate_gradient(lambda v: v @ spd, b, iters=4), (rhs,)
    )
