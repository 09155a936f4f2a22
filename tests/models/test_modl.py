"""MoDL: CG data consistency against a direct solve, implicit gradients, coil maps, ensembles."""

import pytest
import torch

from conftest import synthetic_batch
from mrdistill.models import build_model, count_parameters
from mrdistill.models.ensemble import member_variance
from mrdistill.models.modl import dc_solve
from mrdistill.physics.operators import MRIOperator

N, C, H, W = 2, 3, 6, 5


def problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    smaps = torch.randn(N, C, H, W, dtype=torch.complex64, generator=g)
    mask = (torch.rand(N, 1, H, W, generator=g) > 0.5).float()
    y = torch.randn(N, C, H, W, dtype=torch.complex64, generator=g)
    z = torch.randn(N, 1, H, W, dtype=torch.complex64, generator=g)
    return MRIOperator(mask, smaps), y, z


def direct_solve(op: MRIOperator, y, z, lam):
    """(A^H A + lam I)^{-1} (A^H y + lam z) with dense matrices, per sample."""
    n = H * W
    basis = torch.eye(n, dtype=torch.complex64).reshape(n, 1, H, W)
    out = []
    for i in range(N):
        op_i = MRIOperator(op.mask[i:i + 1].expand(n, 1, H, W), op.smaps[i:i + 1].expand(n, C, H, W))
        normal = op_i.AHA(basis).reshape(n, n).T + lam * torch.eye(n)
        rhs = op.AH(y)[i].reshape(-1) + lam * z[i].reshape(-1)
        out.append(torch.linalg.solve(normal, rhs).reshape(1, H, W))
    return torch.stack(out)


def test_cg_matches_direct_solve_and_its_gradients():
    op, y, z = problem()
    z.requires_grad_(True)
    lam = torch.tensor(0.3, requires_grad=True)
    x = dc_solve(op, op.AH(y), z, lam, iters=100)
    ref = direct_solve(op, y, z, lam)
    assert torch.allclose(x, ref, atol=1e-5)
    w = torch.randn(N, 1, H, W, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    grads = [torch.autograd.grad((w.conj() * v).real.sum() + v.abs().square().sum(), (z, lam))
             for v in (x, ref)]
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert float(grads[0][1]) == pytest.approx(float(grads[1][1]), rel=1e-4)


def test_single_coil_dc_has_the_closed_form():
    # Single-coil Cartesian: x = F^H[(M y + lam F z) / (M + lam)] exactly.
    b = synthetic_batch(complex_input=True)
    z = torch.randn(2, 1, 32, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    lam = torch.tensor(0.05)
    x = dc_solve(MRIOperator(b.mask), MRIOperator(b.mask).AH(b.kspace), z, lam, iters=10)
    from mrdistill.physics.fft import fft2c, ifft2c
    expected = ifft2c((b.mask * b.kspace + lam * fft2c(z)) / (b.mask + lam))
    assert torch.allclose(x, expected, atol=1e-5)


def test_modl_paper_size_and_training_step_is_finite():
    # Wu & Li's teacher: 9 convs of 64 channels, 2-channel complex, one learnable lam.
    assert count_parameters(build_model("modl", in_channels=2)) == 2 * 64 * 9 + 64 + 7 * (64 * 64 * 9 + 64) \
        + 64 * 2 * 9 + 2 + 1
    b = synthetic_batch(complex_input=True)
    model = build_model("modl", unrolls=2, convs=3, channels=8, in_channels=2, cg_iters=10, seed=0)
    out = model(b.kspace, b.mask, return_features=True)
    assert out.image.shape == (2, 2, 32, 32)
    assert sorted(out.features) == ["unroll1.denoised", "unroll1.out", "unroll2.denoised", "unroll2.out"]
    out.image.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.raw_lam.grad is not None and model.raw_lam.grad != 0
    assert float(model.lam.detach()) == pytest.approx(0.05, rel=1e-5)


def test_modl_with_coil_maps_and_without():
    op, y, _ = problem()
    model = build_model("modl", unrolls=1, convs=2, channels=4, in_channels=2, seed=0)
    assert model(y, op.mask, smaps=op.smaps).image.shape == (N, 2, H, W)
    joint = build_model("modl", unrolls=1, convs=2, channels=4, in_channels=2 * C, seed=0)
    assert joint(y, op.mask).image.shape == (N, 2 * C, H, W)
    with pytest.raises(ValueError, match="coil maps"):
        model(y, op.mask)


def test_ensemble_mean_and_variance():
    b = synthetic_batch(complex_input=True)
    kw = {"unrolls": 1, "convs": 2, "channels": 4, "in_channels": 2}
    ens = build_model("ensemble", member="modl", members=2, member_kwargs=kw, seed=0)
    out = ens(b.kspace, b.mask, return_features=True)
    a, c = out.features["member1.image"], out.features["member2.image"]
    assert not torch.equal(a, c)  # members are initialised differently
    assert torch.allclose(out.image, (a + c) / 2)
    from mrdistill.physics.fft import magnitude
    assert torch.allclose(out.features["variance"], ((magnitude(a) - magnitude(c)) / 2) ** 2, atol=1e-6)
    assert torch.equal(member_variance([a, a]), torch.zeros_like(out.features["variance"]))
    assert ens(b.kspace, b.mask).features == {}


def test_run_model_passes_coil_maps_to_models_that_use_them():
    from mrdistill.data.sample import Sample
    from mrdistill.distill import DistillObjective
    from mrdistill.models import build_model
    from mrdistill.models.base import run_model
    from mrdistill.physics.fft import fft2c
    from mrdistill.physics.masks import make_mask

    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 16, 16, generator=g).to(torch.complex64)
    smaps = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.complex64)
    smaps = smaps / smaps.abs().square().sum(1, keepdim=True).sqrt()
    mask = make_mask("kdmri", (16, 16), 2.0, seed=0, center_lines=4)[None].expand(2, -1, -1, -1)
    k = fft2c(smaps * image) * mask
    sample = Sample(k, mask, torch.zeros(2, 2, 16, 16), image.abs(), torch.ones(2), ["a", "b"], [0, 1],
                    smaps)
    model = build_model("modl", unrolls=1, convs=2, channels=4, in_channels=2, cg_iters=3, seed=0)
    out = run_model(model, sample)
    assert out.image.shape == (2, 2, 16, 16)  # coil-combined: one complex image
    loss = DistillObjective()(model, sample)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
