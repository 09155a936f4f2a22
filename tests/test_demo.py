"""The demo presets: valid configs, and the distilled student's budget equals the plain student's."""

import math

import pytest

from mrdistill.demo import PRESETS, demo_configs, demo_data, matched_stages
from mrdistill.errors import MrdistillError


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_valid_configs(tmp_path, preset):
    data = demo_data(preset, 4.0)
    cfgs = demo_configs(preset, tmp_path, data, 0, "cpu", False, labeled=40, seen=80)
    assert set(cfgs) == {"teacher", "student", "distilled"}
    assert cfgs["teacher"].model.kwargs["convs"] == 5 and cfgs["student"].model.kwargs["convs"] == 3
    assert cfgs["distilled"].distill.teacher.endswith("teacher/checkpoints/best.pt")


def test_step_matched_budget(tmp_path):
    data = demo_data("quick", 4.0)
    cfgs = demo_configs("quick", tmp_path, data, 0, "cpu", False, labeled=40, seen=80)
    s = cfgs["student"].optim
    student_steps = s.epochs * math.ceil(40 / s.batch_size)
    stage = cfgs["distilled"].distill.stages[0]
    assert stage.max_steps == student_steps
    assert stage.epochs * math.ceil(80 / s.batch_size) >= student_steps


def test_matched_stages_rejects_multi_stage():
    with pytest.raises(ValueError):
        matched_stages([{"epochs": 1}, {"epochs": 1}], 10, 5)


def test_bad_demo_arguments():
    with pytest.raises(MrdistillError, match="acceleration must be > 1"):
        demo_data("quick", 1.0)
    with pytest.raises(MrdistillError, match="unknown preset 'huge'"):
        demo_data("huge", 4.0)
