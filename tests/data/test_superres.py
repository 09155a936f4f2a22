"""Super-resolution data: k-space and area downsampling, the SR data set, and `upsample`."""

import math

import numpy as np
import pytest
import torch

from mrdistill.config import DataConfig, SuperResConfig
from mrdistill.data.build import make_datasets, make_task_datasets
from mrdistill.data.superres import (area_downsample, central_block_mask, check_model_data,
                                     crop_kspace, fourier_upsample, kspace_downsample, pad_kspace,
                                     upsample)
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.models.base import run_model
from mrdistill.models.vdsr import Bicubic
from mrdistill.physics.fft import fft2c, ifft2c


def smooth_positive(h: int, w: int) -> torch.Tensor:
    """A positive image whose spectrum sits well inside the central quarter block."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return 2.0 + torch.cos(2 * math.pi * 2 * yy / h) + 0.5 * torch.sin(2 * math.pi * 3 * xx / w)


@pytest.mark.parametrize("scale", [2, 4])
def test_constant_image_keeps_its_value(scale):
    image = torch.full((1, 16, 24), 3.0)
    lowres = kspace_downsample(fft2c(image), scale)
    assert lowres.shape == (1, 16 // scale, 24 // scale)
    torch.testing.assert_close(lowres, torch.full_like(lowres, 3.0))
    torch.testing.assert_close(area_downsample(image[None], scale)[0], lowres)


@pytest.mark.parametrize("scale", [2, 4])
def test_band_limited_image_is_recovered_by_sinc_interpolation(scale):
    image = smooth_positive(32, 32)[None, None]
    lowres = kspace_downsample(fft2c(image), scale)
    torch.testing.assert_close(fourier_upsample(lowres, scale), image, atol=1e-4, rtol=1e-4)


def test_crop_and_pad_are_adjoint_and_mask_matches():
    k = torch.randn(2, 1, 12, 8, dtype=torch.complex64)
    torch.testing.assert_close(crop_kspace(pad_kspace(k, 2), 2), k)
    mask = central_block_mask((24, 16), 2)
    assert mask.sum() == 12 * 8
    torch.testing.assert_close(pad_kspace(k, 2) * mask, pad_kspace(k, 2))


def test_scale_must_divide_the_image():
    with pytest.raises(MrdistillError, match="does not divide"):
        kspace_downsample(torch.zeros(1, 30, 30, dtype=torch.complex64), 4)
    with pytest.raises(MrdistillError, match="integer >= 2"):
        central_block_mask((8, 8), 1)


@pytest.mark.parametrize("downsample", ["kspace", "area"])
def test_sr_dataset_same_splits_and_shapes(tiny_data, downsample):
    sr_cfg = DataConfig(**{**tiny_data.__dict__, "superres": SuperResConfig(2, downsample)})
    sr = make_task_datasets(sr_cfg)
    rec = make_datasets(tiny_data)
    for split in ("train", "val", "test"):
        assert [(r.volume, r.slice_index) for r in sr[split].records] == \
               [(r.volume, r.slice_index) for r in rec[split].records]
    s = sr["train"][0]
    assert s.zero_filled.shape == (1, 16, 16) and s.target.shape == (1, 32, 32)
    assert s.kspace.shape == (1, 32, 32) and s.mask.shape == (1, 32, 32)
    # The k-space field carries only the central block, consistent with the low-res input.
    assert (s.kspace[~s.mask.bool()] == 0).all()
    if downsample == "area":
        torch.testing.assert_close(s.zero_filled, area_downsample(s.target[None], 2)[0])
    else:
        torch.testing.assert_close(s.zero_filled, ifft2c(crop_kspace(s.kspace, 2)).abs() / 2)


def test_task_datasets_reject_bad_settings(tiny_data):
    for sr, match in ((SuperResConfig(3), "does not divide"), (SuperResConfig(2, "cubic"), "downsampling")):
        with pytest.raises(MrdistillError, match=match):
            make_task_datasets(DataConfig(**{**tiny_data.__dict__, "superres": sr}))


def test_model_and_data_must_agree(tiny_data):
    sr_data = DataConfig(**{**tiny_data.__dict__, "superres": SuperResConfig(2)})
    check_model_data(build_model("vdsr", scale=2, layers=3), sr_data)
    check_model_data(build_model("vdsr", layers=3), sr_data)  # k-space models run on SR data too
    with pytest.raises(MrdistillError, match="upsamples x4"):
        check_model_data(build_model("vdsr", scale=4, layers=3), sr_data)
    with pytest.raises(MrdistillError, match="set data.superres"):
        check_model_data(build_model("vdsr", scale=2, layers=3), tiny_data)


def test_sr_model_refuses_reconstruction_data(tiny_data):
    sample = make_datasets(tiny_data)["test"][0]
    batch = sample._replace(zero_filled=sample.zero_filled[None], target=sample.target[None])
    with pytest.raises(MrdistillError, match="not x2 super-resolution data"):
        run_model(build_model("vdsr", scale=2, layers=3, channels=8), batch)


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
