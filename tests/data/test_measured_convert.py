"""Conversion of measured k-space layouts to fastMRI's (pyqmri-shaped and twix-shaped fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrdistill.data.measured_convert import (TwixReadout, check_kspace, estimate_noise_std,
                                             pyqmri_kspace, read_pyqmri, remove_readout_oversampling,
                                             twix_kspace)
from mrdistill.errors import MrdistillError
from mrdistill.physics.fft import fft2c, ifft2c
from tests.data.measured_fixtures import torch_rss, twix_readouts, write_pyqmri_h5


def test_pyqmri_origin_at_corner_becomes_centred_kspace_of_the_same_image(tmp_path):
    images = write_pyqmri_h5(tmp_path / "vfa.h5", contrasts=10, coils=3, h=24, w=20)
    conv, maps = read_pyqmri(tmp_path / "vfa.h5")
    assert conv.kspace.shape == (10, 3, 24, 20) and conv.kspace.dtype == np.complex64
    assert maps.shape == (3, 24, 20) and maps.dtype == np.complex64
    back = ifft2c(torch.from_numpy(conv.kspace)).numpy()
    np.testing.assert_allclose(back, images, atol=1e-5)
    # centred: reading it with the origin at [0, 0] would give another (wrapped) image
    assert not np.allclose(np.fft.ifft2(conv.kspace, norm="ortho"), images, atol=1e-3)
    np.testing.assert_allclose(conv.target, torch_rss(images), atol=1e-5)
    assert conv.fov_mm is None and conv.noise_std.shape == (3,)


def test_pyqmri_wrong_shapes_are_refused():
    with pytest.raises(MrdistillError, match=r"\(contrasts, coils, 1, H, W\)"):
        pyqmri_kspace(np.zeros((2, 3, 4, 5)), np.zeros((2, 3, 4, 5)))


def test_zero_coils_are_refused_with_one_line():
    with pytest.raises(MrdistillError, match="at least one coil") as err:
        pyqmri_kspace(np.zeros((10, 0, 1, 8, 8), np.float32), np.zeros((10, 0, 1, 8, 8), np.float32), "vfa.h5")
    assert "\n" not in str(err.value) and "vfa.h5" in str(err.value)
    with pytest.raises(MrdistillError, match="at least one coil"):
        twix_kspace([TwixReadout(0, 0, np.zeros((0, 8), np.complex64))], 4, 2, 2.0, None)
    with pytest.raises(MrdistillError, match="NaN or Inf"):
        check_kspace(np.full((1, 1, 2, 2), np.nan, np.complex64), "x")


def test_twix_readouts_become_centred_kspace_without_oversampling():
    readouts, images = twix_readouts(coils=2, lines=16, columns=40, center_line=8)
    conv = twix_kspace(readouts, num_lines=16, center_line=8, oversampling=2.0, fov_mm=(200.0, 200.0, 4.0))
    assert conv.kspace.shape == (1, 2, 20, 16)
    # the central half of the readout FOV, where the object is, is kept exactly
    back = ifft2c(torch.from_numpy(conv.kspace)).numpy()
    np.testing.assert_allclose(back, images[:, :, 10:30], atol=1e-5)
    assert conv.fov_mm == (200.0, 200.0, 4.0)


def test_twix_lines_are_placed_by_the_centre_line_and_repeats_averaged():
    readouts, images = twix_readouts(coils=1, lines=8, columns=16, center_line=3)
    doubled = readouts + [TwixReadout(r.slice, r.line, r.data) for r in readouts]
    a = twix_kspace(readouts, 8, 3, 1.0, None).kspace
    b = twix_kspace(doubled, 8, 3, 1.0, None).kspace
    np.testing.assert_allclose(a, b, atol=1e-7)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(a)).numpy(), images, atol=1e-5)
    with pytest.raises(MrdistillError, match="outside the 8 phase encodes"):
        twix_kspace([TwixReadout(0, 20, readouts[0].data)], 8, 3, 1.0, None)


def test_twix_without_image_data_is_one_line():
    with pytest.raises(MrdistillError, match="gre.dat: no image data") as err:
        twix_kspace([], 16, 8, 2.0, None, "gre.dat")
    assert "\n" not in str(err.value)


def test_oversampling_removal_crops_the_image_readout():
    rng = np.random.default_rng(0)
    image = (rng.normal(size=(1, 1, 12, 6)) + 1j * rng.normal(size=(1, 1, 12, 6))).astype(np.complex64)
    k = fft2c(torch.from_numpy(image)).numpy()
    out = remove_readout_oversampling(k, 2.0)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(out)).numpy(), image[:, :, 3:9], atol=1e-5)
    assert remove_readout_oversampling(k, 1.0) is k


def test_noise_std_is_estimated_per_coil_from_the_corners():
    rng = np.random.default_rng(1)
    sigma = np.array([0.01, 0.03])
    yy, xx = np.mgrid[-32:32, -32:32]
    blob = np.exp(-(xx**2 + yy**2) / (2 * 8.0**2))  # smooth signal: its k-space is central
    images = np.broadcast_to(blob, (2, 2, 64, 64)).astype(np.complex64)
    k = fft2c(torch.from_numpy(images)).numpy()
    noise = rng.normal(size=(2, 2, 2, 64, 64)) * sigma[None, None, :, None, None]
    k = k + (noise[0] + 1j * noise[1])
    est = estimate_noise_std(k)
    np.testing.assert_allclose(est, sigma, rtol=0.1)
