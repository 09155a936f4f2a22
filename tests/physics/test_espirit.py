"""ESPIRiT maps (sigpy) and the phase-invariant comparison of two sets of coil maps."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from mrdistill.data.coils import estimate_smaps, simulate_coil_maps
from mrdistill.errors import MrdistillError
from mrdistill.physics.espirit import align_common_phase, compare_maps, espirit_maps
from mrdistill.physics.fft import fft2c
from mrdistill.physics.masks import make_mask
from tests.data.format_fixtures import phantom

needs_sigpy = pytest.mark.skipif(importlib.util.find_spec("sigpy") is None, reason="sigpy not installed")


def test_comparison_ignores_a_per_pixel_common_phase():
    maps = simulate_coil_maps(4, (16, 16)).numpy()
    rng = np.random.default_rng(0)
    rotated = maps * np.exp(1j * rng.uniform(-np.pi, np.pi, (16, 16)))[None]
    region = np.ones((16, 16), bool)
    np.testing.assert_allclose(align_common_phase(rotated, maps), maps, atol=1e-5)
    same = compare_maps(rotated, maps, region)
    assert same["nrmse_all"] < 1e-5 and min(same["magnitude_correlation"]) > 0.9999
    other = compare_maps(simulate_coil_maps(4, (16, 16)).numpy()[::-1].copy(), maps, region)
    assert other["nrmse_all"] > 0.3 and other["median_magnitude_correlation"] < 0.9
    with pytest.raises(MrdistillError, match="non-empty region"):
        compare_maps(maps, maps, np.zeros((16, 16), bool))


@needs_sigpy
def test_espirit_finds_the_simulated_maps():
    n = 32
    maps = simulate_coil_maps(4, (n, n))
    image = torch.from_numpy(phantom(1, n, n)[0])
    kspace = fft2c(maps * image)
    found = espirit_maps(kspace, calib_width=16).numpy()
    assert found.shape == (4, n, n) and found.dtype == np.complex64
    region = image.numpy() > 0.3
    result = compare_maps(found, maps.numpy(), region)
    assert result["median_magnitude_correlation"] > 0.95 and result["nrmse_all"] < 0.1, result


@needs_sigpy
def test_estimate_smaps_espirit_uses_the_centred_calibration_block():
    n = 32
    maps = simulate_coil_maps(4, (n, n))
    kspace = fft2c(maps * torch.from_numpy(phantom(1, n, n)[0]))
    mask = make_mask("equispaced_fraction", (n, n), 2, seed=0, center_fraction=0.4).reshape(1, 1, n)
    found = estimate_smaps((kspace * mask)[None], mask[None], "espirit")
    assert found.shape == (1, 4, n, n)
    assert compare_maps(found[0].numpy(), maps.numpy(), np.ones((n, n), bool))["median_magnitude_correlation"] > 0.9
    narrow = make_mask("equispaced_fraction", (n, n), 4, seed=0, center_fraction=0.1).reshape(1, 1, n)
    with pytest.raises(MrdistillError, match="wider than its 6-sample kernel"):
        estimate_smaps(kspace * narrow, narrow, "espirit")


def test_without_sigpy_the_option_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sigpy", None)
    monkeypatch.setitem(sys.modules, "sigpy.mri", None)
    monkeypatch.setitem(sys.modules, "sigpy.mri.app", None)
    with pytest.raises(MrdistillError, match=r"data.coil_maps: espirit needs sigpy: pip install 'mrdistill\[measured\]'"):
        espirit_maps(torch.zeros(2, 16, 16, dtype=torch.complex64), 12)
