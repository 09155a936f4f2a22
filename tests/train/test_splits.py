"""train/splits.py: a run's splits recorded in splits.json and read back for --split."""

from __future__ import annotations

import pytest

from mrdistill.data.build import make_task_datasets
from mrdistill.errors import MrdistillError
from mrdistill.train.splits import SPLITS_FILE, check_same_volumes, read_split, record_splits


def test_record_read_and_check(tmp_path, tiny_data):
    data = make_task_datasets(tiny_data, seed=0)
    path = record_splits(tmp_path, data)
    assert path == tmp_path / SPLITS_FILE
    test = read_split(tmp_path, "test")
    assert test["volumes"] and "files" not in test  # the embedded corpus has no files
    check_same_volumes(data["test"], test, "run")
    with pytest.raises(MrdistillError, match="no longer holds the volumes"):
        check_same_volumes(data["val"], test, "run")


def test_refusals_name_the_run(tmp_path):
    with pytest.raises(MrdistillError, match="records no splits"):
        read_split(tmp_path, "test")
    (tmp_path / SPLITS_FILE).write_text("{not json")
    with pytest.raises(MrdistillError, match="not a splits record"):
        read_split(tmp_path, "test")
    (tmp_path / SPLITS_FILE).write_text('{"splits": {"val": {"volumes": []}}}')
    with pytest.raises(MrdistillError, match="no split 'test' recorded"):
        read_split(tmp_path, "test")
