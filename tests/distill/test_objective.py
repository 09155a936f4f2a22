import pytest
import torch

from conftest import synthetic_batch
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model


def test_supervised_objective_is_task_only():
    batch = synthetic_batch()
    out = DistillObjective()(build_model("dccnn", convs=3, seed=0), batch)
    assert set(out) == {"loss", "task"} and torch.equal(out["loss"], out["task"])


def test_weighted_sum_and_log_keys():
    batch = synthetic_batch()
    teacher, student = build_model("dccnn", seed=0), build_model("dccnn", convs=3, seed=1)
    obj = DistillObjective(teacher, {"imitation": (build_kd("imitation"), 0.3),
                                     "attention": (build_kd("attention"), 2.0)}, task_weight=0.7)
    out = obj(student, batch)
    assert set(out) == {"loss", "task", "kd/imitation", "kd/attention"}
    expected = 0.7 * out["task"] + 0.3 * out["kd/imitation"] + 2.0 * out["kd/attention"]
    torch.testing.assert_close(out["loss"], expected)
    # The teacher is frozen and not part of the objective's parameters.
    assert not any(p.requires_grad for p in teacher.parameters())
    assert list(obj.parameters()) == []


def test_task_loss_needs_targets():
    batch = synthetic_batch()._replace(target=None)
    with pytest.raises(MrdistillError, match="targets"):
        DistillObjective()(build_model("dccnn", convs=3), batch)


def test_kd_terms_need_a_teacher():
    with pytest.raises(MrdistillError, match="teacher"):
        DistillObjective(None, {"imitation": (build_kd("imitation"), 1.0)})
