"""A teacher's own data: overrides merged over the students' data config, checked, and the refusal
of a teacher that saw the students' test slices."""

from __future__ import annotations

import pytest

from mrdistill.config import DataConfig, to_dict
from mrdistill.data.build import make_datasets
from mrdistill.data.teacher_data import check_no_leak, merged_data, slice_keys, teacher_datasets
from mrdistill.errors import MrdistillError

SMALL = DataConfig(image_size=32, max_train_slices=8, max_eval_slices=4, slab=16, labeled_train_slices=4)


def test_merged_data_changes_only_what_it_names():
    teacher = merged_data(SMALL, {"labeled_train_slices": 8, "mask": {"acceleration": 8}}, "t")
    assert (teacher.labeled_train_slices, teacher.mask.acceleration) == (8, 8)
    assert teacher.mask.kind == SMALL.mask.kind and teacher.image_size == 32
    assert to_dict(SMALL)["labeled_train_slices"] == 4  # the students' config is not changed
    with pytest.raises(MrdistillError, match="teacher_data.labeled_train_slices"):
        merged_data(SMALL, {"labeled_train_slices": -1}, "teacher_data")


def test_same_split_more_labels_shares_the_test_slices_and_is_accepted():
    students = make_datasets(SMALL, 42)
    assert teacher_datasets(students, SMALL, SMALL, 42, "t") is students  # its own config: theirs
    teacher = teacher_datasets(students, SMALL, merged_data(SMALL, {"labeled_train_slices": 8}, "t"), 42, "t")
    assert slice_keys(teacher["test"]) == slice_keys(students["test"])
    assert slice_keys(students["train"]) | slice_keys(students["unlabeled"]) == slice_keys(teacher["train"])



def test_a_teacher_that_saw_the_test_slices_is_refused():
    data = make_datasets(SMALL, 42)
    with pytest.raises(MrdistillError, match="front.teacher_data: the teacher's training/validation "
                                             "slices include 4 of the students' test slices"):
        check_no_leak({"train": data["test"]}, data["test"], "front.teacher_data")
