from pathlib import Path

import pytest

from mrdistill.config import (DataConfig, RunConfig, apply_overrides, from_dict, load_run_config,
                              save_config)
from mrdistill.errors import MrdistillError


def test_defaults_live_in_dataclasses():
    cfg = from_dict(RunConfig, {})
    assert cfg == RunConfig()
    assert cfg.data.mask.kind == "kdmri"


def test_nested_and_typed():
    cfg = from_dict(RunConfig, {"data": {"image_size": 64, "mask": {"acceleration": 8}},
                                "distill": {"teacher": "t.pt", "stages": [{"epochs": 2, "kd": [
                                    {"name": "attention", "weight": 10}]}]}})
    assert cfg.data.mask.acceleration == 8.0 and isinstance(cfg.data.mask.acceleration, float)
    assert cfg.distill.stages[0].kd[0].weight == 10.0


def test_unknown_key_names_valid_ones():
    with pytest.raises(MrdistillError, match="unknown key 'imgsize'.*image_size"):
        from_dict(RunConfig, {"data": {"imgsize": 3}})


def test_wrong_type_is_an_error():
    with pytest.raises(MrdistillError, match="expected int"):
        from_dict(DataConfig, {"image_size": "big"})


def test_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\noptim:\n  epochs: 3\n")
    cfg = load_run_config(path, ["optim.lr=0.01", "data.sources=[mni, dipy_s0]"])
    assert cfg.optim.epochs == 3 and cfg.optim.lr == 0.01 and cfg.data.sources == ["mni", "dipy_s0"]
    save_config(cfg, tmp_path / "out.yaml")
    assert load_run_config(tmp_path / "out.yaml") == cfg


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(MrdistillError, match="key=value"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(MrdistillError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")


KD_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kdmri_kd.yaml"


def test_set_indexes_lists():
    cfg = load_run_config(KD_CONFIG, ["distill.stages.0.epochs=1", "distill.stages.1.kd.0.weight=0.25"])
    assert [s.epochs for s in cfg.distill.stages] == [1, 150]
    assert cfg.distill.stages[1].kd[0].weight == 0.25
    with pytest.raises(MrdistillError, match=r"distill\.stages\.2\.epochs: '2' is not an index of a list of 2"):
        load_run_config(KD_CONFIG, ["distill.stages.2.epochs=1"])
    with pytest.raises(MrdistillError, match="not an index"):
        load_run_config(KD_CONFIG, ["distill.stages.first.epochs=1"])


def test_override_that_every_stage_shadows_is_an_error():
    # Every stage sets its own epochs: optim.epochs would be silently ignored.
    with pytest.raises(MrdistillError, match=r"optim\.epochs has no effect.*distill\.stages\.0\.epochs, "
                                             r"distill\.stages\.1\.epochs"):
        load_run_config(KD_CONFIG, ["optim.epochs=3"])
    # No stage sets its own lr, so optim.lr reaches them: fine; once both do, it is an error.
    assert load_run_config(KD_CONFIG, ["optim.lr=0.01"]).optim.lr == 0.01
    with pytest.raises(MrdistillError, match=r"distill\.stages\.1\.lr"):
        load_run_config(KD_CONFIG, ["distill.stages.0.lr=0.1", "distill.stages.1.lr=0.1", "optim.lr=0.01"])
    # Without stages (train configs) optim.epochs is the budget.
    assert load_run_config(None, ["optim.epochs=3"]).optim.epochs == 3
