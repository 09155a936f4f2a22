from dataclasses import replace
from pathlib import Path

import pytest

from mrdistill.config import (DataConfig, PredictConfig, RunConfig, apply_overrides, from_dict, load_run_config,
                              save_config)
from mrdistill.config.checks import check_fields
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
    with pytest.raises(MrdistillError, match="image_size: expected an integer, got 'big'"):
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


@pytest.mark.parametrize("data, message", [
    ({"optim": {"lr": -1}}, "optim.lr: expected a finite number > 0, got -1"),
    ({"optim": {"lr": float("nan")}}, "optim.lr: expected a finite number > 0, got nan"),
    ({"optim": {"epochs": True}}, "optim.epochs: expected an integer, got true"),
    ({"optim": {"epochs": 0}}, "optim.epochs: expected an integer in \\[1, 100000\\], got 0"),
    ({"optim": {"max_steps": -3}}, "optim.max_steps: expected an integer in \\[1, 1000000000\\], got -3"),
    ({"optim": {"grad_clip": -1.0}}, "optim.grad_clip: expected a finite number > 0"),
    ({"optim": {"batch_size": 2.5}}, "optim.batch_size: expected an integer, got 2.5"),
    ({"seed": 2**70}, r"seed: expected an integer in \[0, 2\*\*63 - 1\]"),
    ({"name": None}, "name: expected a string, got null"),
    ({"name": ""}, "name: expected a simple relative name"),
    ({"name": "../x"}, "name: expected a simple relative name"),
    ({"name": "/tmp/x"}, "name: expected a simple relative name"),
    ({"model": {"kwargs": [1, 2]}}, "model.kwargs: expected a mapping, got \\[1, 2\\]"),
    ({"data": {"mask": {"acceleration": 1.0}}}, "data.mask.acceleration: expected a finite number > 1"),
    ({"data": {"split_fractions": [0.5, 0.5]}}, "data.split_fractions: expected a list of 3 items"),
    ({"distill": {"stages": [{"kd": [{"weight": -1}]}]}}, r"distill.stages\[0\].kd\[0\].weight: expected"),
])
def test_values_are_range_checked_with_the_full_key(data, message):
    with pytest.raises(MrdistillError, match=message):
        from_dict(RunConfig, data)


def test_exponent_numbers_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-4\n  max_steps: 3e5\n")
    cfg = load_run_config(path, ["optim.weight_decay=1E-6"])
    assert cfg.optim.lr == 1e-4 and cfg.optim.max_steps == 300000 and isinstance(cfg.optim.max_steps, int)
    assert cfg.optim.weight_decay == 1e-6
    with pytest.raises(MrdistillError, match="optim.epochs: expected an integer, got 2.5"):
        load_run_config(path, ["optim.epochs=2.5e0"])


def test_check_fields_names_the_option_the_user_typed():
    cfg = replace(PredictConfig(), batch_size=0)
    with pytest.raises(MrdistillError, match="--batch-size: expected an integer in \\[1, 65536\\], got 0"):
        check_fields(cfg, "predict", {"batch_size": "--batch-size"})
    check_fields(PredictConfig())


def test_measured_data_and_coil_map_keys_are_checked():
    cfg = from_dict(DataConfig, {"dataset": "measured", "coil_maps": "espirit",
                                 "measured": {"val": [3], "test": [0, 9], "phantom": False}})
    assert (cfg.dataset, cfg.coil_maps, cfg.measured.val, cfg.measured.phantom) == ("measured", "espirit", [3], False)
    with pytest.raises(MrdistillError, match="data.coil_maps: expected one of 'ratio', 'espirit'"):
        from_dict(DataConfig, {"coil_maps": "walsh"}, "data")
    with pytest.raises(MrdistillError, match=r"data.measured.test: expected .*\[0, 9\]"):
        from_dict(DataConfig, {"measured": {"test": [12]}}, "data")


def _int_fields(cls, where=""):
    """(dotted key, field) of every integer field below config dataclass `cls`."""
    import dataclasses
    import typing

    from mrdistill.config.checks import field_check

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = [a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)]
        nested = [a for a in args if dataclasses.is_dataclass(a)]
        if nested:
            yield from _int_fields(nested[0], f"{where}{f.name}.")
        elif int in args or typing.get_origin(tp) is list and typing.get_args(tp) == (int,):
            yield f"{where}{f.name}", field_check(f)


def test_every_count_has_an_upper_bound_checked_at_parse_time():
    from mrdistill.config import PredictConfig, PrepareConfig
    from mrdistill.study.config import StudyConfig

    found = [(key, check) for cls in (RunConfig, PrepareConfig, PredictConfig, StudyConfig)
             for key, check in _int_fields(cls)]
    assert len(found) > 30
    for key, check in found:
        huge = 10**40
        assert check is not None and not check.ok(huge) and not check.ok([huge, huge]), key
    with pytest.raises(MrdistillError, match=r"optim.epochs: expected an integer in \[1, 100000\], got 1000"):
        load_run_config(None, ["optim.epochs=" + "1" + "0" * 39])


def _laughs(levels: int, key: str) -> str:
    """A "billion laughs" YAML: 9**levels values behind one alias, used as `key`."""
    lines = ["presets:", "  anchors:", '    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines + [f"{key}: *l{levels - 1}"]) + "\n"


def _flow_laughs(levels: int) -> str:
    """The same bomb as one flow-style YAML value (for --set)."""
    parts = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def test_yaml_aliases_expand_under_a_limit_and_messages_stay_short(tmp_path):
    import time

    from mrdistill.config.checks import show
    from mrdistill.config.parse import MAX_YAML_VALUES

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_laughs(9, "name"))  # 387 million strings if expanded
    start = time.perf_counter()
    with pytest.raises(MrdistillError, match=f"bomb.yaml: the YAML expands to more than {MAX_YAML_VALUES:,} values"):
        load_run_config(bomb)
    assert time.perf_counter() - start < 5
    with pytest.raises(MrdistillError, match="--set optim.lr: the YAML expands"):
        load_run_config(None, ["name=[" + ", ".join(["&a [" + ", ".join(["x"] * 9) + "]"]
                                                       + ["*a"] * 8) + "]", "optim.lr=" + _flow_laughs(9)])
    small = tmp_path / "small.yaml"
    small.write_text(_laughs(4, "name"))  # 6,561 strings: under the limit, still a wrong type
    with pytest.raises(MrdistillError) as info:
        load_run_config(small)
    assert str(info.value).startswith("name: expected a string, got [[[") and len(str(info.value)) < 300
    assert len(show(list(range(10**6)))) <= 200 and len(show("x" * 10**6)) <= 200
    assert show(None) == "null" and show(True) == "true" and show(-1.5) == "-1.5"
