import math

import numpy as np
import pytest
import torch

from mrdistill.config import AugmentConfig, DataConfig, from_dict
from mrdistill.data.augment import (AugmentParams, adjust_intensity, augment_image, draw_params,
                                    flip_rotate, rescale_fov)
from mrdistill.data.build import make_datasets, make_task_datasets
from mrdistill.data.datasets import SliceDataset, build_splits
from mrdistill.data.simulate import simulate_kspace
from mrdistill.distill.teacher_cache import cache_allowed
from mrdistill.errors import MrdistillError
from mrdistill.physics.fft import ifft2c

ON = {"enabled": True, "fov_scale": [0.7, 2.0], "intensity": [0.5, 2.0], "gamma": [0.6, 1.6],
      "noise_std": [0.0, 0.02]}


def disc(n: int = 32) -> torch.Tensor:
    """A bright off-centre disc on a dimmer square: asymmetric, so flips and turns show."""
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    img = ((yy > 4) & (yy < 24) & (xx > 6) & (xx < 28)).float() * 0.3
    img[((yy - 10) ** 2 + (xx - 20) ** 2) < 16] = 1.0
    return img


def test_draws_are_deterministic_per_seed_and_differ_between_seeds():
    cfg = from_dict(AugmentConfig, ON)
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    a, b, c = draw_params(cfg, 7), draw_params(cfg, 7), draw_params(cfg, 8)
    assert a == b and a != c
    assert torch.equal(torch.random.get_rng_state(), state)  # no global RNG touched
    assert np.array_equal(np.random.get_state()[1], np_state)
    draws = [draw_params(cfg, s) for s in range(200)]
    assert all(0.7 <= d.fov_scale <= 2.0 and 0.5 <= d.intensity <= 2.0 and 0.6 <= d.gamma <= 1.6
               and 0 <= d.noise_std <= 0.02 for d in draws)
    assert {d.quarter_turns for d in draws} == {0, 1, 2, 3}
    assert any(d.flip_lr for d in draws) and not all(d.flip_lr for d in draws)


def test_defaults_draw_the_identity():
    p = draw_params(AugmentConfig(flip=False, rot90=False), 3)
    img = disc()
    assert torch.equal(augment_image(img, p), img)
    assert p.noise_std == 0.0


def test_flip_rotate_is_shape_preserving_and_invertible():
    img = disc()
    for lr in (False, True):
        for ud in (False, True):
            for turns in range(4):
                out = flip_rotate(img, lr, ud, turns)
                assert out.shape == img.shape
                back = flip_rotate(torch.rot90(out, -turns, dims=(-2, -1)), lr, ud, 0)
                assert torch.equal(back, img)
    assert not torch.equal(flip_rotate(img, True, False, 0), img)


@pytest.mark.parametrize("scale", [0.5, 0.8, 1.0, 1.5, 2.0])
def test_fov_scale_keeps_shape_and_scales_the_anatomy(scale):
    img = torch.zeros(48, 48)
    img[16:32, 16:32] = 1.0
    out = rescale_fov(img, scale)
    assert out.shape == img.shape and out.dtype == torch.float32 and float(out.min()) >= 0
    # a centred square's area grows with scale**2
    assert float((out > 0.5).sum()) == pytest.approx(256 * scale**2, rel=0.15)


def test_fov_zoom_in_fills_the_field_of_view_and_zoom_out_pads():
    img = torch.zeros(40, 40)
    img[10:30, 10:30] = 1.0
    assert float((rescale_fov(img, 2.0) > 0.5).float().mean()) > 0.9
    small = rescale_fov(img, 0.5, offset=(0.0, 1.0))  # top-right corner
    assert float(small[20:, :].abs().max()) == 0.0 and float(small[:, :20].abs().max()) == 0.0


def test_intensity_and_gamma():
    img = disc()
    out = adjust_intensity(img, 2.5, 0.5)
    assert float(out.max()) == pytest.approx(2.5)
    assert float(out[img == 0.3][0]) == pytest.approx(2.5 * math.sqrt(0.3), rel=1e-5)
    assert torch.equal(adjust_intensity(torch.zeros(4, 4), 2.0, 0.5), torch.zeros(4, 4))


def test_noise_level_measured_matches_the_drawn_one():
    img = disc(64)
    clean, _ = simulate_kspace(img, "real", seed=1)
    noisy, _ = simulate_kspace(img, "real", seed=1, noise_std=0.05, noise_seed=123)
    diff = noisy - clean
    assert float(diff.real.std()) == pytest.approx(0.05, rel=0.05)
    assert float(diff.imag.std()) == pytest.approx(0.05, rel=0.05)
    # orthonormal FFT: the image-domain noise has the same std per component
    assert float(ifft2c(diff).real.std()) == pytest.approx(0.05, rel=0.05)
    again, _ = simulate_kspace(img, "real", seed=1, noise_std=0.05, noise_seed=123)
    assert torch.equal(again, noisy)


def cfg_on(tiny_data: DataConfig, **augment) -> DataConfig:
    tiny_data.augment = from_dict(AugmentConfig, {**ON, **augment})
    return tiny_data


def test_training_slices_change_every_epoch_and_eval_slices_never(tiny_data):
    ds = make_datasets(cfg_on(tiny_data), seed=5)
    train, test = ds["train"], ds["test"]
    a = train[0]
    assert torch.equal(train[0].kspace, a.kspace)  # same epoch, same draw
    train.set_epoch(1)
    b = train[0]
    assert not torch.equal(a.target, b.target)
    assert a.kspace.shape == b.kspace.shape == (1, 32, 32) and a.target.shape == (1, 32, 32)
    assert float(a.max_value) == pytest.approx(float(a.target.max()))
    test.set_epoch(3)
    plain = make_datasets(tiny_data.__class__(**{**vars(tiny_data), "augment": AugmentConfig()}), seed=5)
    assert torch.equal(test[0].kspace, plain["test"][0].kspace)
    assert torch.equal(test[0].target, plain["test"][0].target)


def test_the_masked_kspace_is_the_kspace_of_the_augmented_target(tiny_data):
    """Augmentation happens before simulation: without noise, the full k-space is the FFT of the
    target, so data consistency with the target holds exactly where the mask samples."""
    cfg = cfg_on(tiny_data, noise_std=[0.0, 0.0])
    ds = make_datasets(cfg, seed=2)["train"]
    for epoch in range(3):
        ds.set_epoch(epoch)
        s = ds[1]
        full, _ = simulate_kspace(s.target[0], "real", seed=0)
        assert torch.allclose(s.kspace, full * s.mask, atol=1e-5)


def test_the_run_seed_changes_the_draws(tiny_data):
    cfg = cfg_on(tiny_data)
    recs = build_splits(cfg)["train"]
    a = SliceDataset(recs, cfg, "train", seed=1)[0]
    b = SliceDataset(recs, cfg, "train", seed=2)[0]
    assert not torch.equal(a.target, b.target)


def test_complex_phase_is_smooth_and_fresh_per_epoch(tiny_data):
    cfg = cfg_on(tiny_data, phase=True, noise_std=[0.0, 0.0], fov_scale=[1.0, 1.0], gamma=[1.0, 1.0],
                 intensity=[1.0, 1.0], flip=False, rot90=False)
    cfg.mode = "complex"
    ds = make_datasets(cfg, seed=0)["train"]
    phases = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        full_k, target = ds._augmented(ds.records[0])
        image = ifft2c(full_k)[0]
        assert torch.allclose(image.abs(), target, atol=1e-5)  # the phase leaves the magnitude
        inside = target > 0.2
        phase = torch.angle(image)
        assert float(image.imag.abs().max()) > 0.01  # not real-valued
        # smooth: neighbouring pixels inside the anatomy differ by far less than the range
        step = (phase[1:, :] - phase[:-1, :]).abs()[inside[1:, :] & inside[:-1, :]]
        assert float(step.max()) < 0.5
        phases.append(phase[inside])
    assert not torch.allclose(phases[0], phases[1])


def test_bad_settings_are_refused_with_the_key(tiny_data):
    with pytest.raises(MrdistillError, match=r"data.augment.phase needs data.mode: complex"):
        make_datasets(cfg_on(tiny_data, phase=True))
    with pytest.raises(MrdistillError, match=r"data.augment.fov_scale: expected \[low, high\]"):
        from_dict(DataConfig, {"augment": {"fov_scale": [2.0, 1.0]}}, "data")
    with pytest.raises(MrdistillError, match=r"data.augment.noise_std"):
        from_dict(DataConfig, {"augment": {"noise_std": [-1, 0]}}, "data")
    cfg = cfg_on(tiny_data)
    with pytest.warns(UserWarning, match="distill.cache_teacher: data.augment draws new augmentations"):
        assert cache_allowed(True, cfg, "distill.cache_teacher") is False  # the one policy: off, said once
    cfg.dataset = "prepared"
    with pytest.raises(MrdistillError, match="not available for data.dataset: prepared"):
        make_datasets(cfg)
    cfg.dataset = "embedded"
    cfg.superres = from_dict(DataConfig, {"superres": {}}, "data").superres
    with pytest.raises(MrdistillError, match="not available for super-resolution"):
        make_task_datasets(cfg)


def test_params_default_is_the_identity():
    img = disc()
    assert torch.equal(augment_image(img, AugmentParams()), img)
