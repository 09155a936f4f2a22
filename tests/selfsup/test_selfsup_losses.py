"""Self-supervised losses: golden values, zero at the truth, and the multi-teacher objective."""

import pytest
import torch

from conftest import synthetic_batch
from mrdistill.config import SelfSupConfig
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.physics.fft import fft2c
from mrdistill.selfsup.losses import (agreement_loss, dc_regulariser, normalised_l1_l2,
                                      reundersampling_fidelity, reundersampling_loss)
from mrdistill.selfsup.teachers import SelfSupervisedObjective


def test_normalised_l1_l2_golden():
    ref = torch.zeros(1, 1, 2, 2, dtype=torch.complex64)
    ref[0, 0, 0, 0], ref[0, 0, 0, 1] = 3 + 4j, 1.0
    pred = ref.clone()
    pred[0, 0, 0, 0] = 0.0  # error 5 on a point of Lambda
    pred[0, 0, 1, 1] = 100.0  # outside Lambda: ignored
    lam = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    expected = 0.5 * 5 / (26 ** 0.5) + 0.5 * 5 / 6
    assert float(normalised_l1_l2(pred, ref, lam)) == pytest.approx(expected, rel=1e-6)
    assert float(normalised_l1_l2(ref, ref, lam)) == 0.0


def test_reundersampling_loss_is_zero_at_the_truth_and_positive_elsewhere():
    b = synthetic_batch(complex_input=True)
    phase = torch.polar(torch.ones_like(b.target), torch.linspace(0, 1, 32).expand(2, 1, 32, 32))
    truth = b.target * phase
    kspace = fft2c(truth) * b.mask
    assert float(reundersampling_loss(truth, kspace, b.mask)) < 1e-10
    blurred = torch.nn.functional.avg_pool2d(b.target, 3, 1, 1) * phase
    assert float(reundersampling_fidelity(blurred, kspace, b.mask)) > 1e-6
    assert float(dc_regulariser(blurred, kspace, b.mask)) > 1e-6
    both = reundersampling_loss(blurred, kspace, b.mask, dc_weight=0.5)
    expected = reundersampling_fidelity(blurred, kspace, b.mask) + 0.5 * dc_regulariser(
        blurred, kspace, b.mask)
    assert float(both) == pytest.approx(float(expected))


def test_agreement_loss():
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    assert float(agreement_loss([z, z], temperature=None)) == pytest.approx(0.0, abs=1e-6)
    assert float(agreement_loss([z, -z], temperature=None)) == pytest.approx(2.0, abs=1e-6)
    same, other = agreement_loss([z, z], 0.1), agreement_loss([z, z.roll(1, 0)], 0.1)
    assert float(same) < float(other)
    with pytest.raises(ValueError):
        agreement_loss([z])


@pytest.mark.parametrize("method", ["reundersample", "ssdu"])
def test_multi_teacher_objective_trains_every_teacher(method):
    b = synthetic_batch(n=2, size=32, complex_input=True)._replace(target=None)
    cfg = SelfSupConfig(method=method, acs_lines=2, factors=[2.0, 2.5])
    model = build_model("ensemble", member="dccnn", members=2, seed=0,
                        member_kwargs={"cascades": 1, "convs": 3, "channels": 4, "in_channels": 2})
    objective = SelfSupervisedObjective(cfg, seed=0)
    losses = objective(model, b)
    assert {"teacher1", "teacher2", "agreement", "loss"} <= set(losses)
    losses["loss"].backward()
    for member in model.members:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in member.parameters())
    with pytest.raises(MrdistillError, match="with targets"):
        objective(model, synthetic_batch(n=2, size=32, complex_input=True))
