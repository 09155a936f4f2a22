"""`mrdistill.accel`'s public entries, and `optim.channels_last: auto` resolved by them."""

from __future__ import annotations

import pytest
import torch

import mrdistill.accel as accel
from mrdistill.config import OptimConfig
from mrdistill.config.parse import from_dict
from mrdistill.errors import MrdistillError
from mrdistill.train.loop import uses_channels_last


def test_public_entries_are_the_documented_ones() -> None:
    assert sorted(accel.__all__) == ["EagerInference", "channels_last_applies", "fast_training",
                                     "optimise_for_inference", "retain_freed_memory",
                                     "training_kernels_available"]
    assert all(callable(getattr(accel, name)) for name in accel.__all__)


def test_auto_is_on_for_cpu_training_only_where_the_path_applies(monkeypatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert accel.channels_last_applies(gpu) is False
    expected = torch.backends.mkldnn.is_available() or accel.training_kernels_available()
    assert accel.channels_last_applies(cpu) is expected
    assert uses_channels_last("auto", cpu) is expected and uses_channels_last("auto", gpu) is False
    assert uses_channels_last(True, gpu) is True and uses_channels_last(False, cpu) is False
    # Without oneDNN and without the kernels, auto keeps NCHW on the CPU too.
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    monkeypatch.setattr(accel, "training_kernels_available", lambda: False)
    assert accel.channels_last_applies(cpu) is False


def test_channels_last_setting_is_checked_where_parsed() -> None:
    assert OptimConfig().channels_last == "auto"
    assert from_dict(OptimConfig, {"channels_last": False}, "optim").channels_last is False
    assert from_dict(OptimConfig, {"channels_last": "auto"}, "optim").channels_last == "auto"
    for bad in ("yes", 1, 0.0):
        with pytest.raises(MrdistillError, match="optim.channels_last"):
            from_dict(OptimConfig, {"channels_last": bad}, "optim")
