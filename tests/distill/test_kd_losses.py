"""Registry-wide properties of every KD loss, plus golden values for a few."""

import inspect

import pytest
import torch

from conftest import synthetic_batch
from mrdistill.distill import DistillObjective, build_kd, list_kd
from mrdistill.distill.attention import attention_map, default_pairs, normalise_map
from mrdistill.distill.registry import _KD
from mrdistill.errors import MrdistillError
from mrdistill.models import ReconOutput, build_model


def pair(seed: int = 0, n: int = 2):
    batch = synthetic_batch(n=n)
    teacher = build_model("dccnn", convs=5, seed=seed)
    student = build_model("dccnn", convs=3, seed=seed + 1)
    return batch, teacher, student


def make_kd(name, pairs):
    """A registered loss, given `pairs` when it takes feature pairs."""
    cls = _KD[name]
    takes_pairs = "pairs" in inspect.signature(cls.__init__).parameters
    return build_kd(name, pairs=pairs) if takes_pairs else build_kd(name)


@pytest.mark.parametrize("name", list_kd())
def test_every_kd_loss_is_finite_and_zero_for_identical(name):
    batch, teacher, _ = pair(n=4)  # relational methods (RKD angles, PKT) need >= 3 samples
    t = teacher(batch.kspace, batch.mask, return_features=True)
    # The teacher as its own student: every feature pair exists and matches exactly.
    pairs = {k: k for k in default_pairs().values()}
    loss = make_kd(name, pairs)
    if hasattr(loss, "setup"):
        loss.setup(t, t, batch)
    value = loss(t, t, batch)
    assert value.ndim == 0 and torch.isfinite(value)
    assert float(value.detach()) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", list_kd())
def test_gradients_reach_only_the_student(name):
    batch, teacher, student = pair(n=4)
    objective = DistillObjective(teacher, {name: (make_kd(name, default_pairs()), 1.0)},
                                 task_weight=0.0)
    objective.setup(student, batch)  # what `fit` does: student-side adapters exist before training
    losses = objective(student, batch)
    assert losses["loss"] > 0
    losses["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    # Adapters (FitNets regressors) are on the student side: they learn too.
    assert all(p.grad is not None for p in objective.parameters())


def test_imitation_golden_values():
    batch = synthetic_batch()
    s = ReconOutput(torch.zeros(2, 1, 4, 4), {})
    t = ReconOutput(torch.full((2, 1, 4, 4), 0.5), {})
    assert float(build_kd("imitation")(s, t, batch)) == pytest.approx(0.5)
    assert float(build_kd("imitation", distance="l2")(s, t, batch)) == pytest.approx(0.25)
    assert float(build_kd("imitation", compat="kdmri")(s, t, batch)) == pytest.approx(0.5 / 32)


def test_attention_golden_values():
    batch = synthetic_batch()
    fs = torch.zeros(1, 2, 1, 2)
    fs[0, 0, 0, 0] = 1.0  # Q_S = [1, 0] -> normalised [1, 0]
    ft = torch.ones(1, 3, 1, 2)  # Q_T = [3, 3] -> normalised [0.7071, 0.7071]
    s, t = ReconOutput(fs, {"a": fs}), ReconOutput(ft, {"b": ft})
    at = build_kd("attention", pairs={"a": "b"})
    expected = ((1 - 2**-0.5) ** 2 + 0.5) / 2
    assert float(at(s, t, batch)) == pytest.approx(expected, rel=1e-6)
    # KD-MRI's batch normalisation with one sample maps every non-zero pixel to 1 -> L1 = 0.5
    at_b = build_kd("attention", pairs={"a": "b"}, normalize="batch")
    assert float(at_b(s, t, batch)) == pytest.approx(0.5, rel=1e-6)


def test_attention_normalisation_axes():
    q = torch.rand(3, 5) + 0.1
    assert torch.allclose(normalise_map(q, "sample").norm(dim=1), torch.ones(3))
    assert torch.allclose(normalise_map(q, "batch").norm(dim=0), torch.ones(5))
    assert attention_map(torch.ones(2, 4, 3, 3)).shape == (2, 9)


def test_bad_feature_key_and_shape_mismatch_name_the_problem():
    batch, teacher, student = pair()
    s = student(batch.kspace, batch.mask, return_features=True)
    t = teacher(batch.kspace, batch.mask, return_features=True)
    with pytest.raises(MrdistillError, match="student has no feature 'cascade1.conv9'; valid:"):
        build_kd("attention", pairs={"cascade1.conv9": "cascade1.conv3"})(s, t, batch)
    small = ReconOutput(s.image, {"x": torch.ones(2, 4, 8, 8)})
    with pytest.raises(MrdistillError, match="spatial sizes differ"):
        build_kd("attention", pairs={"x": "cascade1.conv3"})(small, t, batch)


def test_unknown_method_and_option():
    with pytest.raises(MrdistillError, match="unknown KD method 'fitnet'; valid: attention"):
        build_kd("fitnet")
    with pytest.raises(MrdistillError, match="no option 'beta'"):
        build_kd("attention", beta=3)
