"""MRI forward operator: adjointness, coil handling, masking conventions."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mrdistill.physics.fft import fft2c, ifft2c
from mrdistill.physics.masks import make_mask
from mrdistill.physics.operators import MRIOperator, adjoint_op, apply_mask, forward_op


def _randc(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.conj() * b).sum()


def _mask_1d(n: int, w: int, seed: int) -> torch.Tensor:
    return torch.stack([make_mask("random", (8, w), 2, seed=seed + i) for i in range(n)]).reshape(n, 1, 1, w)


def _assert_adjoint(op: MRIOperator, x: torch.Tensor, y: torch.Tensor) -> None:
    lhs, rhs = _inner(op.A(x), y), _inner(x, op.AH(y))
    assert torch.allclose(lhs, rhs, rtol=1e-4, atol=1e-4), (lhs, rhs)


def test_single_coil_adjoint_1d_and_2d_masks() -> None:
    n, h, w = 2, 8, 10
    x, y = _randc(n, 1, h, w, seed=1), _randc(n, 1, h, w, seed=2)
    _assert_adjoint(MRIOperator(_mask_1d(n, w, 0)), x, y)
    mask2d = make_mask("gaussian2d", (h, w), 3, seed=4, center_lines=2).unsqueeze(0).expand(n, 1, h, w)
    _assert_adjoint(MRIOperator(mask2d), x, y)


def test_multi_coil_adjoint_and_shapes() -> None:
    n, c, h, w = 2, 4, 8, 6
    smaps = _randc(n, c, h, w, seed=3)
    op = MRIOperator(_mask_1d(n, w, 5), smaps)
    x, y = _randc(n, 1, h, w, seed=6), _randc(n, c, h, w, seed=7)
    assert op.A(x).shape == (n, c, h, w) and op.A(x).dtype == torch.complex64
    assert op.AH(y).shape == (n, 1, h, w)
    _assert_adjoint(op, x, y)


def test_coilwise_without_smaps_keeps_channels() -> None:
    x = _randc(1, 3, 6, 6, seed=8)
    op = MRIOperator(torch.ones(1, 1, 1, 6))
    assert torch.allclose(op.AHA(x), x, atol=1e-5)  # full sampling: A^H A = I


def test_normalised_coils_with_full_sampling_give_identity() -> None:
    smaps = _randc(1, 3, 8, 8, seed=9)
    smaps = smaps / smaps.abs().square().sum(dim=1, keepdim=True).sqrt()  # sum_c |S_c|^2 = 1
    op = MRIOperator(torch.ones(1, 1, 8, 8), smaps)
    x = _randc(1, 1, 8, 8, seed=10)
    assert torch.allclose(op.AHA(x), x, atol=1e-5)


def test_aha_is_hermitian_psd() -> None:
    op = MRIOperator(_mask_1d(1, 8, 11), _randc(1, 2, 8, 8, seed=12))
    u, v = _randc(1, 1, 8, 8, seed=13), _randc(1, 1, 8, 8, seed=14)
    assert torch.allclose(_inner(u, op.AHA(v)), _inner(op.AHA(u), v), rtol=1e-4, atol=1e-4)
    quad = _inner(u, op.AHA(u))
    assert quad.real > 0 and abs(quad.imag) < 1e-3


def test_functions_match_class_and_definition() -> None:
    mask, smaps = _mask_1d(1, 8, 15), _randc(1, 2, 8, 8, seed=16)
    x, y = _randc(1, 1, 8, 8, seed=17), _randc(1, 2, 8, 8, seed=18)
    op = MRIOperator(mask, smaps)
    assert torch.equal(forward_op(x, mask, smaps), op.A(x))
    assert torch.equal(adjoint_op(y, mask, smaps), op.AH(y))
    assert torch.allclose(op.A(x), fft2c(smaps * x) * mask)
    expected = (smaps.conj() * ifft2c(mask * y)).sum(dim=1, keepdim=True)
    assert torch.allclose(op.AH(y), expected, atol=1e-6)


def test_masking_leaves_no_signed_zeros() -> None:
    k = torch.complex(-torch.ones(1, 1, 2, 4), -torch.ones(1, 1, 2, 4))
    masked = apply_mask(k, torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(1, 1, 1, 4))
    zeros = masked[..., 1::2]
    assert not torch.signbit(zeros.real).any() and not torch.signbit(zeros.imag).any()
    assert apply_mask(k, torch.ones(1, 1, 1, 4, dtype=torch.bool)).dtype == torch.complex64


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(2, 7), w=st.integers(2, 7),
    seed=st.integers(0, 2**16), coils=st.booleans(),
)
def test_adjointness_property(n: int, c: int, h: int, w: int, seed: int, coils: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(n, 1, h, w, generator=g) < 0.5).float()
    smaps = _randc(n, c, h, w, seed=seed + 1) if coils else None
    x = _randc(n, 1 if coils else c, h, w, seed=seed + 2)
    y = _randc(n, c, h, w, seed=seed + 3)
    _assert_adjoint(MRIOperator(mask, smaps), x, y)
