"""`models.upsampling`: a super-resolution model upsamples images and is checked against the data."""

import numpy as np
import pytest

from mrdistill.config import DataConfig, SuperResConfig
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.models.upsampling import check_model_data, upsample
from mrdistill.models.vdsr import Bicubic


def test_model_and_data_must_agree(tiny_data):
    sr_data = DataConfig(**{**tiny_data.__dict__, "superres": SuperResConfig(2)})
    check_model_data(build_model("vdsr", scale=2, layers=3), sr_data)
    check_model_data(build_model("vdsr", layers=3), sr_data)  # k-space models run on SR data too
    with pytest.raises(MrdistillError, match="upsamples x4"):
        check_model_data(build_model("vdsr", scale=4, layers=3), sr_data)
    with pytest.raises(MrdistillError, match="set data.superres"):
        check_model_data(build_model("vdsr", scale=2, layers=3), tiny_data)


def test_upsample_shapes_and_intensity_equivariance():
    model = build_model("vdsr", seed=0, scale=2, layers=3, channels=8)
    image = np.random.default_rng(0).random((10, 12)).astype(np.float32)
    out = upsample(model, image)
    assert out.shape == (20, 24) and out.dtype == np.float32
    # Inputs are normalised by their maximum: scaling the image scales the result.
    np.testing.assert_allclose(upsample(model, 7.0 * image), 7.0 * out, rtol=1e-5, atol=1e-5)
    stack = upsample(model, np.stack([image, image]))
    assert stack.shape == (2, 20, 24)
    np.testing.assert_allclose(stack[1], out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(upsample(Bicubic(2), np.full((4, 4), 5.0)), np.full((8, 8), 5.0),
                               rtol=1e-6)


def test_upsample_rejects_bad_input():
    model = build_model("vdsr", scale=2, layers=3, channels=8)
    with pytest.raises(MrdistillError, match="colour image with 3 channels"):
        upsample(model, np.zeros((16, 16, 3)))
    with pytest.raises(MrdistillError, match=r"\(H, W\) or a slice stack"):
        upsample(model, np.zeros((2, 2, 8, 8)))
    with pytest.raises(MrdistillError, match="non-finite"):
        upsample(model, np.full((8, 8), np.nan))
    with pytest.raises(MrdistillError, match="reconstruction model"):
        upsample(build_model("vdsr", layers=3), np.zeros((8, 8)))
