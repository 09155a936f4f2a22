"""VDSR, the SwinIR-style teacher and the CHPNet-style student: sizes, both input kinds, properties."""

import pytest
import torch
import torch.nn.functional as F

from conftest import synthetic_batch
from mrdistill.config import DataConfig, SuperResConfig
from mrdistill.data.superres import fourier_upsample, make_sr_datasets
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model, count_parameters
from mrdistill.models.base import run_model
from mrdistill.models.swinir import (relative_position_index, shifted_window_mask, window_merge,
                                     window_partition)
from mrdistill.models.vdsr import Bicubic
from mrdistill.physics.fft import fft2c, ifft2c

SR_MODELS = {"vdsr": {"layers": 5, "channels": 8},
             "swinir": {"embed_dim": 16, "groups": 1, "depth": 2, "heads": 2, "window": 4},
             "chpnet": {"channels": 8, "levels": 2, "iterations": 2}}


def test_kdmri_vdsr_parameter_counts_exact():
    assert count_parameters(build_model("vdsr", layers=11)) == 333_569
    assert count_parameters(build_model("vdsr", layers=7)) == 185_857
    # The interpolation (or zero filling) in front adds no parameters.
    assert count_parameters(build_model("vdsr", layers=7, scale=4)) == 185_857


def test_paper_scale_teacher_is_about_11_8m():
    paper = build_model("swinir", scale=4, embed_dim=180, groups=6, depth=6, heads=6,
                        upsample_channels=64, global_residual=False)
    assert 11.5e6 < count_parameters(paper) < 12.2e6


@pytest.mark.parametrize("name", sorted(SR_MODELS))
@pytest.mark.parametrize("scale", [2, 4])
def test_super_resolution_mode(name, scale):
    model = build_model(name, seed=0, scale=scale, **SR_MODELS[name])
    assert model.input_kind == "lowres"
    lowres = torch.rand(2, 1, 12, 8)
    out = model(lowres, None, return_features=True)
    assert out.image.shape == (2, 1, 12 * scale, 8 * scale) and out.image.dtype == torch.float32
    assert out.features and all(torch.isfinite(v).all() for v in out.features.values())
    assert model(lowres, None).features == {}


@pytest.mark.parametrize("name", sorted(SR_MODELS))
def test_kspace_mode_runs_through_run_model(name):
    batch = synthetic_batch(size=16)
    model = build_model(name, seed=0, **SR_MODELS[name])
    assert model.input_kind == "kspace"
    out = run_model(model, batch, return_features=True)
    assert out.image.shape == batch.zero_filled.shape and out.features


@pytest.mark.parametrize("name", ["vdsr", "swinir"])
def test_kspace_mode_keeps_sampled_kspace(name):
    # A hard DC step ends these models: sampled k-space equals the acquired data (real mode keeps
    # the real part, which is exact for the symmetric columns; compare on a complex 2-channel model).
    batch = synthetic_batch(size=16, complex_input=True)
    model = build_model(name, seed=0, in_channels=2, **SR_MODELS[name])
    image = model(batch.kspace, batch.mask).image
    k = fft2c(torch.complex(image[:, :1], image[:, 1:]))
    m = batch.mask.bool().expand_as(k)
    torch.testing.assert_close(k[m], batch.kspace[m], atol=1e-5, rtol=1e-5)


def test_vdsr_offers_kdmris_input_magnitude_after_zero_padded_upsampling():
    cfg = DataConfig(image_size=32, max_train_slices=2, max_eval_slices=2, slab=8,
                     superres=SuperResConfig(scale=4))
    sample = make_sr_datasets(cfg)["test"][0]
    # KD-MRI: keep the central (H/4, W/4) block of the centred k-space of the high-res image,
    # zero-pad it back to (H, W), inverse FFT, magnitude.
    k = fft2c(sample.target.to(torch.complex64))
    block = torch.zeros(32, 32)
    block[12:20, 12:20] = 1
    kdmri_input = ifft2c(k * block).abs()
    model = build_model("vdsr", layers=3, channels=4, kspace_input="magnitude", dc=False, seed=0)
    batch = sample._replace(kspace=sample.kspace[None], mask=sample.mask[None],
                            zero_filled=sample.zero_filled[None], target=sample.target[None])
    out = run_model(model, batch, return_features=True)
    torch.testing.assert_close(out.features["input"][0], kdmri_input, atol=1e-5, rtol=1e-5)
    # ours by default: the low-res magnitude, then zero-padded (Fourier) upsampling: not the same
    before = fourier_upsample(sample.zero_filled[None], 4)[0]
    assert (before - kdmri_input).abs().max() > 1e-3
    with pytest.raises(MrdistillError, match="kspace_input"):
        build_model("vdsr", scale=4, kspace_input="magnitude")


def test_window_partition_round_trip_and_bias_index():
    x = torch.randn(2, 8, 12, 3)
    windows = window_partition(x, 4)
    assert windows.shape == (2, 6, 16, 3)
    torch.testing.assert_close(window_merge(windows, 4, 8, 12), x)
    idx = relative_position_index(4)
    assert idx.shape == (16, 16) and idx.min() == 0 and idx.max() == 48
    assert torch.equal(idx.diagonal(), torch.full((16,), 24))  # zero offset in the middle


def test_shifted_window_mask_blocks_wrapped_neighbours():
    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert torch.equal(mask, mask.transpose(1, 2)) and (mask.diagonal(dim1=1, dim2=2) == 0).all()
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    assert (mask[3] < 0).any()  # the bottom-right one mixes wrapped borders: blocked


def test_swinir_attention_never_wraps_around():
    # Shifted windows roll the image cyclically; the mask must keep the opposite borders apart.
    model = build_model("swinir", seed=0, scale=2, embed_dim=8, groups=1, depth=2, heads=2,
                        window=8, global_residual=False).eval()
    x = torch.rand(1, 1, 32, 32)
    y = x.clone()
    y[..., 0, 0] += 1.0
    with torch.no_grad():
        a, b = model(x, None).image, model(y, None).image
    assert not torch.allclose(a[..., :4, :4], b[..., :4, :4])
    torch.testing.assert_close(a[..., -16:, -16:], b[..., -16:, -16:], atol=0, rtol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_chpnet_starts_from_bilinear_and_area_operators(scale):
    model = build_model("chpnet", seed=0, scale=scale, channels=8, levels=2, iterations=1)
    y = torch.rand(2, 1, 6, 5)
    bilinear = F.interpolate(y, scale_factor=scale, mode="bilinear", align_corners=False)
    torch.testing.assert_close(model.lift(y), bilinear)
    torch.testing.assert_close(model.adjoint(y), bilinear)
    x = torch.rand(2, 1, 6 * scale, 5 * scale)
    torch.testing.assert_close(model.down(x), F.avg_pool2d(x, scale))
    # The untrained prior is the identity (last U-Net conv at zero).
    assert torch.equal(model.unet(x, None, ""), torch.zeros_like(x))


def test_chpnet_kspace_data_gradient_is_exact():
    # In k-space mode the reconnect step uses the gradient of 1/2 ||M F x - y||^2 exactly.
    batch = synthetic_batch(size=16)
    model = build_model("chpnet", seed=0, channels=8, levels=2, iterations=1)
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    loss = 0.5 * (fft2c(x.to(torch.complex64)) * batch.mask - batch.kspace).abs().square().sum()
    (expected,) = torch.autograd.grad(loss, x)
    got = model._data_gradient(x.detach(), batch.kspace, batch.mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_bicubic_baseline_has_no_parameters():
    model = Bicubic(2)
    x = torch.full((1, 1, 4, 4), 3.0)
    assert count_parameters(model) == 0 and model.input_kind == "lowres"
    torch.testing.assert_close(model(x).image, torch.full((1, 1, 8, 8), 3.0))


@pytest.mark.parametrize("name", sorted(SR_MODELS))
def test_bad_inputs_are_clear_errors(name):
    model = build_model(name, scale=2, **SR_MODELS[name])
    with pytest.raises(MrdistillError, match=r"\(N, 1, H, W\)"):
        model(torch.rand(1, 3, 8, 8), None)
    with pytest.raises(MrdistillError, match="scale"):
        build_model(name, scale=0)
