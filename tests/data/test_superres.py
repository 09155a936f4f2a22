"""Super-resolution data: k-space and area downsampling, the SR data set."""

import math

import pytest
import torch

from mrdistill.config import DataConfig, SuperResConfig
from mrdistill.data.build import make_datasets, make_task_datasets
from mrdistill.data.superres import (area_downsample, central_block_mask, crop_kspace,
                                     fourier_upsample, kspace_downsample, pad_kspace)
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.models.base import run_model
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


def test_sr_model_refuses_reconstruction_data(tiny_data):
    sample = make_datasets(tiny_data)["test"][0]
    batch = sample._replace(zero_filled=sample.zero_filled[None], target=sample.target[None])
    with pytest.raises(MrdistillError, match="not x2 super-resolution data"):
        run_model(build_model("vdsr", scale=2, layers=3, channels=8), batch)
