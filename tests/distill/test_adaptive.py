"""Adaptive (variance-weighted) distillation: weights, loss, running/fixed averages, the shared teacher cache."""

import pytest
import torch

from conftest import synthetic_batch
from mrdistill.data.sample import Sample
from mrdistill.distill import DistillObjective
from mrdistill.distill.teacher_cache import TeacherCache
from mrdistill.distill.adaptive import (AdaptiveDistillation, adaptive_weights,
                                        dataset_mean_variance, weighted_mse)
from mrdistill.errors import MrdistillError
from mrdistill.models import ReconOutput, build_model

KW = {"cascades": 1, "convs": 3, "channels": 4, "in_channels": 2}


def ensemble():
    return build_model("ensemble", member="dccnn", members=2, member_kwargs=KW, seed=0).eval()


def test_weights_golden_and_clipped():
    v = torch.tensor([1.0, 2.0, 4.0, 100.0, 0.0])
    w = adaptive_weights(v, 2.0, (1 / 3, 3.0))
    assert torch.allclose(w, torch.tensor([2.0, 1.0, 0.5, 1 / 3, 3.0]))


def test_weighted_mse_is_per_sample_w_squared():
    s, t = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert float(weighted_mse(s, t, torch.tensor([1.0, 2.0]))) == pytest.approx((1 + 4) / 2)


def test_loss_zero_for_identical_and_confident_samples_count_more():
    b = synthetic_batch(complex_input=True)
    t = ensemble()(b.kspace, b.mask, return_features=True)
    kd = AdaptiveDistillation(average="running")
    assert float(kd(t, t, b).detach()) == 0.0
    var = torch.stack([torch.full((1, 32, 32), 1e-4), torch.full((1, 32, 32), 4e-4)])
    teacher = ReconOutput(torch.ones(2, 2, 32, 32), {"variance": var})
    kd = AdaptiveDistillation()
    kd.set_average(float(var.flatten(1).sum(1).mean()))
    w = kd.weights(teacher)
    assert w[0] > 1 > w[1]
    student = ReconOutput(torch.zeros(2, 2, 32, 32), {})
    plain = AdaptiveDistillation(weighting="plain")
    expected = float((w**2).mean()) * float(plain(student, teacher, b))
    assert float(kd(student, teacher, b)) == pytest.approx(expected, rel=1e-5)
    assert not plain.needs_features and kd.needs_features


def test_running_average_and_errors():
    var = torch.full((2, 1, 4, 4), 0.5)
    teacher = ReconOutput(torch.ones(2, 2, 4, 4), {"variance": var})
    kd = AdaptiveDistillation(average="running", momentum=0.5)
    with torch.no_grad():  # checks and evaluation do not move the estimate ...
        w = kd.weights(ReconOutput(teacher.image, {"variance": torch.cat([var, 3 * var])}))
    # ... before the first step the batch's own mean (16) stands in for it
    assert w.tolist() == pytest.approx([2.0, 2.0, 2 / 3, 2 / 3]) and not bool(kd.seen)
    kd.weights(teacher)
    assert float(kd.avg_variance) == pytest.approx(8.0)
    kd.weights(ReconOutput(teacher.image, {"variance": var * 3}))
    assert float(kd.avg_variance) == pytest.approx(0.5 * 8 + 0.5 * 24)
    with pytest.raises(MrdistillError, match="at least 2 teachers"):
        kd.weights(ReconOutput(teacher.image, {}))
    with pytest.raises(MrdistillError, match="clip"):
        AdaptiveDistillation(clip=(3.0, 1.0))
    with pytest.raises(MrdistillError, match="> 0"):
        kd.set_average(0.0)


def test_the_variance_pass_fills_the_objectives_cache_and_the_teacher_runs_once():
    b = synthetic_batch(complex_input=True)
    teacher = ensemble()
    calls = []
    teacher.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    cache = TeacherCache()
    kd = AdaptiveDistillation()
    kd.set_average(dataset_mean_variance(teacher, _items(b), cache=cache))
    objective = DistillObjective(teacher, {"adaptive": (kd, 1.0)}, task_weight=0.0, cache=cache)
    student = build_model("dccnn", seed=1, **KW)
    loss = objective(student, b._replace(target=None))
    assert calls == [2]  # the pass ran it; training took its outputs from the cache
    ref = teacher(b.kspace, b.mask, return_features=True)
    assert torch.equal(objective.run_teacher(b).features["variance"], ref.features["variance"])
    loss["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())


def _items(b):
    """The batch as a list of single samples (a tiny data set)."""
    return [Sample(b.kspace[i], b.mask[i], b.zero_filled[i], None, b.max_value[i], b.volume[i],
                   b.slice_index[i]) for i in range(b.kspace.shape[0])]


def test_dataset_mean_variance_is_the_mean_of_v():
    b = synthetic_batch(complex_input=True)
    teacher = ensemble()
    with torch.no_grad():
        v = teacher(b.kspace, b.mask, return_features=True).features["variance"].flatten(1).sum(1)
    mean = dataset_mean_variance(teacher, _items(b), batch_size=1)
    assert mean == pytest.approx(float(v.mean()), rel=1e-5)
