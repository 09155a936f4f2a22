"""A teacher that learns while teaching: edge operators, gradient paths, schedules, the loop hook."""

import pytest
import torch

from conftest import synthetic_batch
from mrdistill.config import OptimConfig, TeacherCorrectionConfig
from mrdistill.data.build import make_datasets
from mrdistill.distill import build_kd
from mrdistill.distill.teacher_correction import (TeacherCorrectionObjective, edge_loss, log_kernel,
                                                  log_response, sobel_gradients)
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.train.loop import fit
from mrdistill.train.plan import StagePlan

TEACHER = {"embed_dim": 8, "groups": 1, "depth": 2, "heads": 2, "window": 4}
STUDENT = {"channels": 4, "levels": 2, "iterations": 2}


def make(config: TeacherCorrectionConfig | None = None, features: bool = True):
    teacher = build_model("swinir", seed=0, **TEACHER)
    student = build_model("chpnet", seed=1, **STUDENT)
    terms = {"imitation": (build_kd("imitation"), 0.5)}
    if features:
        terms["hetero"] = (build_kd("hetero_feature", pairs={"iter2.dec1": "body"}), 0.1)
    return teacher, student, TeacherCorrectionObjective(teacher, terms, 1.0, config)


def test_edge_operators():
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # intensity grows along x by 1 per pixel
    g = sobel_gradients(ramp)
    assert g.shape == (1, 2, 8, 8)
    torch.testing.assert_close(g[0, 0, 2:-2, 2:-2], torch.full((4, 4), 1.0))  # d/dx, interior
    torch.testing.assert_close(g[0, 1], torch.zeros(8, 8))  # nothing along y
    assert abs(float(log_kernel(1.5).sum())) < 1e-6
    torch.testing.assert_close(log_response(torch.full((1, 2, 9, 9), 4.0)), torch.zeros(1, 2, 9, 9),
                               atol=1e-5, rtol=0)
    x = torch.rand(1, 1, 8, 8, requires_grad=True)
    for op in ("sobel", "log"):
        loss = edge_loss(x, torch.zeros(1, 1, 8, 8), op)
        (grad,) = torch.autograd.grad(loss, x)
        assert loss > 0 and grad.abs().sum() > 0


def test_teacher_copy_is_trainable_and_handed_over_separately():
    teacher, _, obj = make(TeacherCorrectionConfig(teacher_lr_scale=0.25))
    assert obj.teacher is not teacher and all(p.requires_grad for p in obj.teacher.parameters())
    assert teacher.training  # the caller's teacher is left as it was (train mode, as built)
    own = {id(p) for p in obj.parameters()}
    assert not own & {id(p) for p in obj.teacher.parameters()}
    (group,) = obj.extra_param_groups(2e-3)
    assert group["lr"] == pytest.approx(5e-4) and len(group["params"]) == len(list(teacher.parameters()))


def _grads(module):
    return [None if p.grad is None else p.grad.clone() for p in module.parameters()]


def test_joint_update_keeps_the_two_gradient_paths_apart():
    batch = synthetic_batch(size=16)
    _, student, obj = make()
    obj.setup(student, batch)
    student.train()
    out = obj(student, batch)
    assert {"task", "kd/imitation", "kd/hetero", "teacher/rec", "teacher/edge", "teacher/feedback",
            "teacher/loss", "loss"} <= set(out)
    out["loss"].backward(retain_graph=True)
    joint_t, joint_s = _grads(obj.teacher), _grads(student)
    obj.teacher.zero_grad(set_to_none=True)
    student.zero_grad(set_to_none=True)
    out["teacher/loss"].backward(retain_graph=True)
    assert all(p.grad is None for p in student.parameters())  # the teacher's loss never moves the student
    for a, b in zip(joint_t, _grads(obj.teacher)):
        torch.testing.assert_close(a, b)
    obj.teacher.zero_grad(set_to_none=True)
    (out["task"] + 0.5 * out["kd/imitation"] + 0.1 * out["kd/hetero"]).backward()
    assert all(p.grad is None for p in obj.teacher.parameters())  # nor the student's the teacher
    for a, b in zip(joint_s, _grads(student)):
        torch.testing.assert_close(a, b)


def test_alternating_schedule():
    batch = synthetic_batch(size=16)
    _, student, obj = make(TeacherCorrectionConfig(schedule="alternate", student_steps=2,
                                                   teacher_steps=1), features=False)
    assert [obj.phase(i) for i in range(6)] == ["student", "student", "teacher"] * 2
    every = make(TeacherCorrectionConfig(teacher_every=3), features=False)[2]
    assert [every.phase(i) for i in range(6)] == ["joint", "student", "student"] * 2
    student.train()
    for expected in ["student", "student", "teacher"]:
        student.zero_grad(set_to_none=True)
        obj.teacher.zero_grad(set_to_none=True)
        obj(student, batch)["loss"].backward()
        s_moved = any(p.grad is not None for p in student.parameters())
        t_moved = any(p.grad is not None for p in obj.teacher.parameters())
        assert (s_moved, t_moved) == (expected == "student", expected == "teacher")


def test_edge_and_reconstruction_terms_improve_the_teacher():
    batch = synthetic_batch(size=16)
    _, student, obj = make(TeacherCorrectionConfig(schedule="alternate", student_steps=1,
                                                   teacher_steps=1000, feedback_weight=0.0),
                           features=False)
    opt = torch.optim.Adam(obj.extra_param_groups(3e-3)[0]["params"], lr=3e-3)
    student.train()
    obj.steps = 1  # start in the teacher phase
    first = None
    for _ in range(8):
        out = obj(student, batch)
        first = first if first is not None else float(out["teacher/loss"].detach())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(obj(student, batch)["teacher/loss"].detach()) < first


def test_bad_settings_are_clear_errors():
    with pytest.raises(MrdistillError, match="schedule"):
        make(TeacherCorrectionConfig(schedule="sometimes"))
    with pytest.raises(MrdistillError, match="edge operator"):
        make(TeacherCorrectionConfig(edge_operator="canny"))
    with pytest.raises(MrdistillError, match="feature KD term"):
        make(TeacherCorrectionConfig(feedback="features"), features=False)


def test_fit_updates_the_teacher_copy_through_the_loop_hook(tmp_path, tiny_data):
    ds = make_datasets(tiny_data)
    teacher, student, obj = make(TeacherCorrectionConfig(teacher_lr_scale=1.0))
    frozen = [p.detach().clone() for p in teacher.parameters()]
    start = [p.detach().clone() for p in obj.teacher.parameters()]
    fit(student, obj, ds["train"], ds["val"], StagePlan(OptimConfig(epochs=1, batch_size=4),
        model_name="chpnet", model_kwargs=STUDENT, progress=False), tmp_path)
    assert any(not torch.equal(a, p) for a, p in zip(start, obj.teacher.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(frozen, teacher.parameters()))
