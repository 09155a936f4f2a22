"""Metrics: agreement with scikit-image, hand-computed values, and the properties each metric promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from mrdistill.errors import MrdistillError
from mrdistill.eval import metrics as m

skm = pytest.importorskip("skimage.metrics")


def smooth_volume(seed: int, shape: tuple[int, int, int] = (3, 48, 40), sigma: float = 2.0) -> np.ndarray:
    """A float64 volume of smooth random images, each slice scaled to a different positive range."""
    rng = np.random.default_rng(seed)
    vol = np.stack([gaussian_filter(rng.random(shape[1:]), sigma) for _ in range(shape[0])])
    vol -= vol.min()
    return vol * np.array([1.0, 0.7, 1.3])[: shape[0], None, None] * 3.0


def noisy(vol: np.ndarray, level: float, seed: int = 1) -> np.ndarray:
    return vol + level * vol.max() * np.random.default_rng(seed).standard_normal(vol.shape)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    gt = smooth_volume(0)
    return gt, noisy(gt, 0.03)


@pytest.mark.parametrize("data_range", [None, 1.0, 2.5, 10.0])
def test_psnr_and_ssim_agree_with_skimage(
    pair: tuple[np.ndarray, np.ndarray], data_range: float | None
) -> None:
    gt, pred = pair
    peak = gt.max() if data_range is None else data_range
    ref_psnr = skm.peak_signal_noise_ratio(gt, pred, data_range=peak)
    ref_ssim = np.mean([skm.structural_similarity(g, p, data_range=peak) for g, p in zip(gt, pred)])
    # float32 tensors in, as a model would produce: the float64 internals keep the agreement.
    g32, p32 = torch.tensor(gt, dtype=torch.float32), torch.tensor(pred, dtype=torch.float32)
    assert m.psnr(gt, pred, data_range) == pytest.approx(ref_psnr, abs=1e-9)
    assert m.psnr(g32, p32, data_range) == pytest.approx(ref_psnr, abs=1e-4)
    assert abs(m.ssim(g32, p32, data_range) - ref_ssim) < 1e-4
    assert abs(m.ssim(gt, pred, data_range) - ref_ssim) < 1e-9


def test_ssim_per_slice_matches_skimage_slices(pair: tuple[np.ndarray, np.ndarray]) -> None:
    gt, pred = pair
    per = m.ssim_per_slice(torch.tensor(gt), torch.tensor(pred), 2.0)
    ref = [skm.structural_similarity(g, p, data_range=2.0) for g, p in zip(gt, pred)]
    assert per.shape == (3,) and per.dtype == torch.float64
    np.testing.assert_allclose(per.numpy(), ref, atol=1e-9)


def test_identical_volumes() -> None:
    gt = smooth_volume(2, (2, 48, 48))
    assert m.psnr(gt, gt) == math.inf
    assert m.ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert m.nmse(gt, gt) == 0.0
    assert m.hfen(gt, gt) == 0.0
    assert m.hfen_laplace(gt, gt) == 0.0
    assert m.vif(gt, gt) == pytest.approx(1.0, abs=1e-6)


def test_nmse_by_hand() -> None:
    gt = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # ||gt||^2 = 30
    pred = torch.tensor([[[1.0, 2.0], [3.0, 2.0]]])  # ||gt - pred||^2 = 4
    assert m.nmse(gt, pred) == pytest.approx(4 / 30, rel=1e-12)
    assert m.psnr(gt, pred) == pytest.approx(10 * math.log10(16 / 1.0), rel=1e-12)  # MSE 4/4 = 1


def test_log_kernel_sums_to_zero_and_is_symmetric() -> None:
    k = m.log_kernel()
    assert k.shape == (15, 15) and k.dtype == torch.float64
    assert abs(float(k.sum())) < 1e-15
    assert torch.equal(k, k.T) and torch.equal(k, k.flip(0))
    assert float(k[7, 7]) == float(k.min()) < 0  # the centre of a LoG is its negative extreme


def test_hfen_grows_with_blur() -> None:
    gt = smooth_volume(3, (2, 48, 48), sigma=1.0)
    values = [m.hfen(gt, gaussian_filter(gt, (0, s, s))) for s in (0.5, 1.0, 2.0)]
    assert 0 < values[0] < values[1] < values[2]
    assert m.hfen(gt * 5, gaussian_filter(gt, (0, 1, 1)) * 5) == pytest.approx(values[1], rel=1e-9)


def test_hfen_laplace_golden_value() -> None:
    # Slice 0: diff = gt - clip(pred, 0, 1) = [[0,0,0],[0,.5,0],[0,0,-1]]; its 3x3 Laplacian with
    # edge replication is [[0,-.5,0],[-.5,2,.5],[0,.5,-2]]: squared sum 9. lap(gt) is the
    # Laplacian kernel itself: squared sum 20. Slice 1 is perfect. Mean over slices: 9/20/2.
    gt = torch.zeros(2, 3, 3)
    gt[:, 1, 1] = 1.0
    pred = gt.clone()
    pred[0, 1, 1], pred[0, 2, 2] = 0.5, 3.0  # 3.0 is clipped to the data range 1
    assert m.hfen_laplace(gt, pred, 1.0) == pytest.approx(0.225, abs=1e-12)
    assert m.hfen_laplace(gt, pred) == pytest.approx(0.225, abs=1e-12)  # None -> gt max = 1


def test_hfen_laplace_matches_skimage_laplace() -> None:
    filters = pytest.importorskip("skimage.filters")
    gt = smooth_volume(4, (2, 24, 20))
    pred = noisy(gt, 0.05)
    clipped = np.clip(pred, 0, 2.0)
    ref = np.mean(
        [
            np.sum((filters.laplace(g) - filters.laplace(p)) ** 2) / np.sum(filters.laplace(g) ** 2)
            for g, p in zip(gt, clipped)
        ]
    )
    assert m.hfen_laplace(gt, pred, 2.0) == pytest.approx(ref, rel=1e-10)


def test_vif_decreases_with_noise() -> None:
    gt = smooth_volume(5, (2, 64, 64), sigma=1.5)
    values = [m.vif(gt, noisy(gt, level)) for level in (0.001, 0.01, 0.05, 0.2)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert 0 < values[-1] < values[0] < 1
    # Scale invariance through data_range: the same picture in other units scores the same.
    assert m.vif(gt * 7, noisy(gt, 0.01) * 7) == pytest.approx(values[1], rel=1e-9)


def test_vif_rejects_small_slices() -> None:
    gt = smooth_volume(6, (1, 32, 32))
    with pytest.raises(MrdistillError, match="41x41"):
        m.vif(gt, gt)


def test_volume_metrics_and_registry(pair: tuple[np.ndarray, np.ndarray]) -> None:
    gt, pred = pair
    assert set(m.METRICS) == {"nmse", "psnr", "ssim", "hfen", "hfen_laplace", "vif"}
    out = m.volume_metrics(torch.tensor(gt), torch.tensor(pred))
    assert list(out) == ["psnr", "ssim", "nmse", "hfen"]
    assert all(isinstance(v, float) for v in out.values())
    assert out["psnr"] == pytest.approx(m.psnr(gt, pred, gt.max()), rel=1e-12)


def test_slice_metrics_use_the_given_range(pair: tuple[np.ndarray, np.ndarray]) -> None:
    gt, pred = pair
    out = m.slice_metrics(gt[1], pred[1], float(gt.max()), ("psnr", "ssim"))
    assert out["psnr"] == pytest.approx(skm.peak_signal_noise_ratio(gt[1], pred[1], data_range=gt.max()))
    ref_ssim = skm.structural_similarity(gt[1], pred[1], data_range=gt.max())
    assert out["ssim"] == pytest.approx(ref_ssim, abs=1e-9)
    with pytest.raises(MrdistillError):
        m.slice_metrics(gt, pred, 1.0, ("psnr",))


def test_unknown_metric_and_bad_input_raise(pair: tuple[np.ndarray, np.ndarray]) -> None:
    gt, pred = pair
    with pytest.raises(MrdistillError, match="unknown metric 'psnrr'"):
        m.volume_metrics(gt, pred, names=("psnr", "psnrr"))
    with pytest.raises(MrdistillError, match="same shape"):
        m.psnr(gt, pred[:, :-1])
    with pytest.raises(MrdistillError, match="data_range"):
        m.psnr(np.zeros((1, 8, 8)), np.ones((1, 8, 8)))
    with pytest.raises(MrdistillError, match="complex"):
        m.nmse(torch.ones(1, 8, 8, dtype=torch.complex64), torch.ones(1, 8, 8, dtype=torch.complex64))


def test_aggregate() -> None:
    assert m.aggregate([3.0]) == (3.0, 0.0)
    mean, two_sd = m.aggregate([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert two_sd == pytest.approx(2 * np.std([1, 2, 3, 4], ddof=1), rel=1e-12)
    with pytest.raises(MrdistillError):
        m.aggregate([])
