"""The demo presets: valid configs, and the distilled student's budget equals the plain student's."""

import math

import pytest

from mrdistill.config import to_dict
from mrdistill.data.sources import BROAD, HELDOUT
from mrdistill.demo import PRESETS, demo_configs, demo_data
from mrdistill.models import build_model, count_parameters
from mrdistill.errors import MrdistillError


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_valid_configs(tmp_path, preset):
    data = demo_data(preset, 4.0)
    # The slice counts each preset really has (smoke: 6 labelled of 12), so step matching is real.
    labeled = data.labeled_train_slices or 40
    cfgs = demo_configs(preset, tmp_path, data, 0, "cpu", False, labeled=labeled, seen=2 * labeled)
    assert set(cfgs) == {"teacher", "student", "distilled"}
    teacher, student = (build_model(cfgs[k].model.name, **cfgs[k].model.kwargs) for k in ("teacher", "student"))
    assert count_parameters(student) < count_parameters(teacher)
    assert cfgs["distilled"].model == cfgs["student"].model
    assert cfgs["distilled"].distill.teacher.endswith("teacher/checkpoints/best.pt")


def test_step_matched_budget(tmp_path):
    data = demo_data("quick", 4.0)
    cfgs = demo_configs("quick", tmp_path, data, 0, "cpu", False, labeled=40, seen=80)
    s = cfgs["student"].optim
    student_steps = s.epochs * math.ceil(40 / s.batch_size)
    stages = cfgs["distilled"].distill.stages
    per_epoch = math.ceil(80 / s.batch_size)
    used = sum(st.epochs * per_epoch for st in stages[:-1]) + stages[-1].max_steps
    assert used == student_steps
    assert stages[-1].epochs * per_epoch >= stages[-1].max_steps


def test_bad_demo_arguments():
    with pytest.raises(MrdistillError, match="acceleration must be > 1"):
        demo_data("quick", 1.0)
    with pytest.raises(MrdistillError, match="unknown preset 'huge'"):
        demo_data("huge", 4.0)


def test_demo_data_overrides_are_applied_and_checked():
    cfg = demo_data("quick", 4.0, ["data.sources=[mni,dipy_piesno]", "data.augment.enabled=true",
                                   "data.augment.fov_scale=[0.8,2.0]"])
    assert cfg.sources == ["mni", "dipy_piesno"] and cfg.augment.enabled
    assert cfg.augment.fov_scale == [0.8, 2.0] and cfg.image_size == 96  # the preset's value stays
    assert cfg.mask.acceleration == 4.0
    with pytest.raises(MrdistillError, match="changes the data config only"):
        demo_data("quick", 4.0, ["optim.lr=1"])
    with pytest.raises(MrdistillError, match=r"data.augment.gamma: expected \[low, high\]"):
        demo_data("quick", 4.0, ["data.augment.gamma=[2,1]"])


def test_quick_teacher_trains_on_its_own_larger_collection(tmp_path):
    data = demo_data("quick", 4.0)
    cfgs = demo_configs("quick", tmp_path, data, 0, "cpu", False, labeled=10, seen=78)
    teacher, student = cfgs["teacher"].data, cfgs["student"].data
    assert (teacher.labeled_train_slices, student.labeled_train_slices) == (40, 10)
    assert cfgs["distilled"].data == student
    # Only the labelled count differs: the same split, so the same test slices.
    assert to_dict(teacher) == {**to_dict(student), "labeled_train_slices": 40}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_train_on_the_broad_sources_never_on_held_out_images(preset):
    cfg = demo_data(preset, 4.0)
    assert cfg.sources == list(BROAD) and not set(cfg.sources) & set(HELDOUT)
