import pytest
import torch

from mrdistill.distill.init import init_from_teacher, layer_map
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model


def test_layer_map_keeps_first_and_last():
    assert layer_map(3, 5) == [0, 2, 4]
    assert layer_map(2, 5) == [0, 4]
    assert layer_map(5, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(MrdistillError, match="cannot take layers"):
        layer_map(6, 5)


def test_student_starts_from_selected_teacher_convs():
    teacher = build_model("dccnn", convs=5, cascades=2, seed=0)
    student = build_model("dccnn", convs=3, cascades=2, seed=1)
    copied = init_from_teacher(student, teacher)
    assert len(copied) == 2 * 3 * 2  # cascades x convs x (weight, bias)
    t, s = teacher.cascades[1].convs, student.cascades[1].convs
    assert torch.equal(s[0].weight, t[0].weight) and torch.equal(s[1].weight, t[2].weight)
    assert torch.equal(s[2].bias, t[4].bias)


def test_shape_and_cascade_mismatches_are_errors():
    teacher = build_model("dccnn", convs=5, cascades=2, channels=16)
    with pytest.raises(MrdistillError, match="cannot initialise"):
        init_from_teacher(build_model("dccnn", convs=3, cascades=2), teacher)
    with pytest.raises(MrdistillError, match="equal cascades"):
        init_from_teacher(build_model("dccnn", convs=3, cascades=3), teacher)
