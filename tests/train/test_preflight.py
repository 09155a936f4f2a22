"""`train.preflight`: a model's own argument checks and the model/data combinations that cannot
work are refused before anything is written, naming the config key."""

from __future__ import annotations

import pytest

from mrdistill.config import DataConfig
from mrdistill.errors import MrdistillError
from mrdistill.train.preflight import build_checked, check_model_for_data


def test_a_constructor_refusal_is_a_config_error_naming_the_key():
    with pytest.raises(MrdistillError, match=r"^model.kwargs: dccnn refuses these arguments \(a cascade "
                                             r"needs at least 2 convs, got 1\)$"):
        build_checked("dccnn", {"convs": 1}, "model.kwargs")
    with pytest.raises(MrdistillError, match=r"^sft.student.kwargs: modl refuses these arguments \(modl "
                                             r"in_channels must be 1 \(real\) or even"):
        build_checked("modl", {"in_channels": 3}, "sft.student.kwargs")
    huge = build_checked("dccnn", {"cascades": 2, "convs": 3, "channels": 10_000}, "model.kwargs")
    assert next(huge.parameters()).is_meta  # no memory (7.2 GB of float32 weights if real)


def test_combinations_that_cannot_work_are_refused():
    real, complex4 = DataConfig(image_size=32), DataConfig(image_size=32, mode="complex", coils=4)
    with pytest.raises(MrdistillError, match="model.kwargs: dccnn takes complex images .* data.mode is real"):
        check_model_for_data("dccnn", {"in_channels": 2}, real)
    with pytest.raises(MrdistillError, match=r"model.kwargs: dccnn cannot take the data's 4 coil\(s\) in complex"):
        check_model_for_data("dccnn", {"in_channels": 2, "cascades": 1}, complex4)
    with pytest.raises(MrdistillError, match=r"unet cannot take the data's 4 coil\(s\)"):
        check_model_for_data("unet", {"in_chans": 2, "chans": 4, "num_pool_layers": 1}, complex4)
    check_model_for_data("dccnn", {"in_channels": 1, "cascades": 1}, real)  # these fit
    check_model_for_data("unet", {"in_chans": 8, "chans": 4, "num_pool_layers": 1}, complex4)
    check_model_for_data("varnet", {"num_cascades": 1, "chans": 4, "sens_chans": 2, "pools": 1,
                                    "sens_pools": 1}, complex4)
    # MoDL on simulated coils: with the samples' maps (one combined image) or the coils jointly.
    check_model_for_data("modl", {"unrolls": 1, "convs": 2, "channels": 4, "in_channels": 2}, complex4)
    check_model_for_data("modl", {"unrolls": 1, "convs": 2, "channels": 4, "in_channels": 8}, complex4)
    with pytest.raises(MrdistillError, match=r"modl cannot take the data's 4 coil\(s\)"):
        check_model_for_data("modl", {"unrolls": 1, "convs": 2, "channels": 4, "in_channels": 4}, complex4)
