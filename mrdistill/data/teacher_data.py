"""A teacher's own data: the students' data config with overrides merged over it (e.g. more fully
sampled slices, the user's case of a teacher from a larger collection than the site has), and the
check that such a teacher never saw the students' test slices."""

from __future__ import annotations

import copy
from typing import Any

from mrdistill.config import DataConfig, deep_merge, from_dict, to_dict
from mrdistill.data.build import make_datasets
from mrdistill.data.datasets import SliceDataset
from mrdistill.data.fastmri import FastMRISliceDataset
from mrdistill.errors import MrdistillError


def merged_data(data: DataConfig, overrides: dict[str, Any], key: str) -> DataConfig:
    """`data` with `overrides` merged over it key by key, checked; `key` names them in errors.

    >>> merged_data(DataConfig(labeled_train_slices=10), {"labeled_train_slices": 40}, "t").labeled_train_slices
    40
    """
    return from_dict(DataConfig, deep_merge(to_dict(data), copy.deepcopy(overrides)), key)


def slice_keys(ds: Any) -> set[tuple[str, int]]:
    """(volume, slice) of every slice of an embedded or fastMRI data set."""
    if isinstance(ds, SliceDataset):
        return {(r.volume, r.slice_index) for r in ds.records}
    if isinstance(ds, FastMRISliceDataset):
        return {(ds.volumes[v].path, s) for v, s in ds.items()}
    return set()


def check_no_leak(teacher_data: dict[str, Any], test: Any, key: str = "teacher_data") -> None:
    """Raise when the teacher's training/validation slices include any of `test`'s slices.

    teacher_data: the teacher's data sets by split name; key: the config key named in the error.
    """
    seen = set().union(*(slice_keys(teacher_data[k]) for k in ("train", "unlabeled", "val")
                         if k in teacher_data))
    leak = sorted(seen & slice_keys(test))
    if leak:
        raise MrdistillError(f"{key}: the teacher's training/validation slices include "
                             f"{len(leak)} of the students' test slices (e.g. {leak[0][0]} slice "
                             f"{leak[0][1]}); keep the split keys (sources, slab, split_fractions) "
                             f"as in data or use other sources")


def teacher_datasets(students: dict[str, Any], students_cfg: DataConfig, teacher_cfg: DataConfig,
                     seed: int, key: str) -> dict[str, Any]:
    """The teacher's data sets: the students' own when its config is theirs, else built from
    `teacher_cfg` (same seed) and checked against the students' test set (`key` in the error)."""
    if teacher_cfg == students_cfg:
        return students
    teacher = make_datasets(teacher_cfg, seed)
    check_no_leak(teacher, students["test"], key)
    return teacher
