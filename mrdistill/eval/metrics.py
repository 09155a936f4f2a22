"""Image-quality metrics of one reconstructed volume, in torch (CPU or GPU).

Conventions (fastMRI's ``evaluate.py``; see REFERENCE.md sections 1, 2 and 5):

- Input: one volume, ``gt`` and ``pred`` real tensors of shape ``(S, H, W)`` (numpy arrays are
  accepted too), any float dtype, any device; ``pred`` is moved to ``gt``'s device. Everything is
  computed in float64 so that results agree with scikit-image to ~1e-10, whatever the input dtype.
  (float64 is therefore needed on the device: CUDA and CPU have it.)
- ``data_range=None`` means ``gt.max()`` of the whole volume, fastMRI's convention.
- Every metric returns a Python ``float`` and has the signature ``fn(gt, pred, data_range=None)``
  so that the ``METRICS`` registry can call them all alike; ``nmse`` and ``hfen`` do not depend on
  the intensity scale and ignore ``data_range``.
- Volume pooling: NMSE, PSNR, HFEN and VIF pool their sums over the whole volume (so an empty slice
  cannot produce 0/0); SSIM and ``hfen_laplace`` average per-slice values, as fastMRI and KD-MRI do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from mrdistill.errors import MrdistillError, check_choice

ArrayLike = Union[torch.Tensor, np.ndarray]
MetricFn = Callable[..., float]

DEFAULT_METRICS: tuple[str, ...] = ("psnr", "ssim", "nmse", "hfen")

_SSIM_WIN = 7  # skimage's default window (uniform, 7x7)
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_LOG_SIZE, _LOG_SIGMA = 15, 1.5  # Ravishankar & Bresler's HFEN kernel
_VIF_SIGMA_NSQ = 2.0  # visual noise variance, defined for an 8-bit (0..255) intensity scale
_VIF_EPS = 1e-10


def _volume_pair(gt: ArrayLike, pred: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and return float64 copies ``(S, H, W)`` of gt and pred on gt's device."""
    g = torch.as_tensor(gt).detach()
    p = torch.as_tensor(pred).detach()
    if g.is_complex() or p.is_complex():
        raise MrdistillError("metrics take real images (e.g. magnitudes); got a complex tensor")
    if g.ndim != 3 or g.shape != p.shape:
        raise MrdistillError(
            f"metrics expect gt and pred of the same shape (S, H, W); "
            f"got {tuple(g.shape)} and {tuple(p.shape)}"
        )
    return g.to(torch.float64), p.to(device=g.device, dtype=torch.float64)


def _data_range(gt: torch.Tensor, data_range: float | None) -> float:
    """The peak value: the given one, or the max of the gt volume; it must be positive."""
    value = float(gt.max()) if data_range is None else float(data_range)
    if not value > 0:
        raise MrdistillError(
            f"data_range must be > 0, got {value} (an all-zero target volume has no data range)"
        )
    return value


def nmse(gt: ArrayLike, pred: ArrayLike, data_range: float | None = None) -> float:
    """Normalised MSE ``||gt - pred||^2 / ||gt||^2`` over the volume ``(S, H, W)``.

    ``data_range`` is accepted for a uniform signature and ignored.
    """
    g, p = _volume_pair(gt, pred)
    return float(((g - p) ** 2).sum() / (g**2).sum())


def psnr(gt: ArrayLike, pred: ArrayLike, data_range: float | None = None) -> float:
    """PSNR in dB, ``10 log10(data_range^2 / MSE)`` with the MSE over the volume ``(S, H, W)``.

    Matches ``skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=...)`` on the volume;
    identical images give ``inf``; a prediction with NaN gives NaN (never ``inf``: a diverged model
    must not look perfect).
    """
    g, p = _volume_pair(gt, pred)
    peak = _data_range(g, data_range)
    mse = float(((g - p) ** 2).mean())
    if math.isnan(mse):
        return math.nan
    return 10.0 * math.log10(peak * peak / mse) if mse > 0 else math.inf


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
    """Local SSIM of every 7x7 window lying fully inside the images: x, y real (N, 1, H, W) ->
    (N, 1, H - 6, W - 6), same dtype. data_range: a number or a tensor broadcastable to
    (N, 1, 1, 1). Uniform window, K1 0.01, K2 0.03, sample (co)variances (N/(N-1)): skimage's
    `structural_similarity` defaults and fastMRI's `SSIMLoss` alike."""
    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, _SSIM_WIN, stride=1)

    n = _SSIM_WIN * _SSIM_WIN
    cov_norm = n / (n - 1)  # unbiased local (co)variances, skimage's use_sample_covariance=True
    mx, my = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - mx * mx)
    vy = cov_norm * (mean(y * y) - my * my)
    vxy = cov_norm * (mean(x * y) - mx * my)
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim_per_slice(gt: ArrayLike, pred: ArrayLike, data_range: float | None = None) -> torch.Tensor:
    """SSIM of each slice, float64 tensor ``(S,)``; skimage's ``structural_similarity`` defaults.

    7x7 uniform window, K1 0.01, K2 0.03, sample covariance (N/(N-1)). skimage filters the whole
    image and then crops (win-1)/2 pixels off every border before taking the mean, so only windows
    lying fully inside the image count: that is exactly a "valid" average pooling (`ssim_map`),
    and skimage's boundary mode never matters.
    """
    g, p = _volume_pair(gt, pred)
    peak = _data_range(g, data_range)
    if min(g.shape[-2:]) < _SSIM_WIN:
        raise MrdistillError(
            f"ssim needs slices of at least {_SSIM_WIN}x{_SSIM_WIN}; got {tuple(g.shape[-2:])}"
        )
    return ssim_map(g[:, None], p[:, None], peak).mean(dim=(1, 2, 3))


def ssim(gt: ArrayLike, pred: ArrayLike, data_range: float | None = None) -> float:
    """Mean over slices of the per-slice SSIM (fastMRI's volume SSIM); see ``ssim_per_slice``."""
    return float(ssim_per_slice(gt, pred, data_range).mean())


def log_kernel(
    size: int = _LOG_SIZE, sigma: float = _LOG_SIGMA, device: torch.device | None = None
) -> torch.Tensor:
    """Laplacian-of-Gaussian kernel, float64 ``(size, size)``, shifted to sum exactly to zero.

    A normalised Gaussian times ``(r^2 - 2 sigma^2) / sigma^4`` (MATLAB ``fspecial('log')``'s
    definition); the zero sum makes flat regions respond with exactly zero.
    """
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    r2 = r[:, None] ** 2 + r[None, :] ** 2
    gauss = torch.exp(-r2 / (2 * sigma**2))
    kernel = gauss / gauss.sum() * (r2 - 2 * sigma**2) / sigma**4
    return kernel - kernel.mean()


def hfen(gt: ArrayLike, pred: ArrayLike, data_range: float | None = None) -> float:
    """High-frequency error norm ``||LoG(pred) - LoG(gt)||_2 / ||LoG(gt)||_2`` over the volume.

    LoG 15x15, sigma 1.5 (``log_kernel``), applied per slice with "same" output size and zero
    padding at the borders, like MATLAB ``imfilter``'s default in the original HFEN code.
    ``data_range`` is accepted for a uniform signature and ignored (HFEN is scale free).
    """
    g, p = _volume_pair(gt, pred)
    k = log_kernel(device=g.device)[None, None]
    pad = _LOG_SIZE // 2
    # LoG is linear, so LoG(pred) - LoG(gt) = LoG(pred - gt): one convolution instead of two.
    err = F.conv2d((p - g)[:, None], k, padding=pad)
    ref = F.conv2d(g[:, None], k, padding=pad)
    return float(torch.linalg.vector_norm(err) / torch.linalg.vector_norm(ref))


_LAPLACE_3X3 = ((0.0, -1.0, 0.0), (-1.0, 4.0, -1.0), (0.0, -1.0, 0.0))


def _laplace(x: torch.Tensor) -> torch.Tensor:
    """Plain 3x3 Laplacian of ``(S, H, W)`` -> ``(S, 1, H, W)``, edge-replicating borders.

    For a 1-pixel border, edge replication equals scipy.ndimage's "reflect" mode, which is what
    ``skimage.filters.laplace`` (used by KD-MRI) applies.
    """
    k = torch.tensor(_LAPLACE_3X3, dtype=x.dtype, device=x.device)[None, None]
    return F.conv2d(F.pad(x[:, None], (1, 1, 1, 1), mode="replicate"), k)


def hfen_laplace(gt: ArrayLike, pred: ArrayLike, data_range: float | None = None) -> float:
    """KD-MRI's "HFN": mean over slices of ``sum((lap(gt) - lap(pred))^2) / sum(lap(gt)^2)``.

    ``pred`` is clipped to ``[0, data_range]`` first (KD-MRI clips to [0, 1] on [0, 1]-normalised
    images); ``lap`` is the 3x3 Laplacian. Note the ratio of *squared* norms, unlike ``hfen``.
    """
    g, p = _volume_pair(gt, pred)
    peak = _data_range(g, data_range)
    lg, lp = _laplace(g), _laplace(p.clamp(0.0, peak))
    per_slice = ((lg - lp) ** 2).sum(dim=(1, 2, 3)) / (lg**2).sum(dim=(1, 2, 3))
    return float(per_slice.mean())


def _gaussian_window(n: int, device: torch.device) -> torch.Tensor:
    """Normalised n x n Gaussian, sigma n/5 (MATLAB ``fspecial('gaussian', n, n/5)``), ``(1,1,n,n)``."""
    r = torch.arange(n, dtype=torch.float64, device=device) - (n - 1) / 2
    g1 = torch.exp(-(r**2) / (2 * (n / 5) ** 2))
    w = g1[:, None] * g1[None, :]
    return (w / w.sum())[None, None]


def _vif_scale_terms(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Information (numerator, denominator) sums of one scale; x, y float64 ``(S, 1, h, w)``."""
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sx = (F.conv2d(x * x, w) - mx * mx).clamp_min(0.0)
    sy = (F.conv2d(y * y, w) - my * my).clamp_min(0.0)
    sxy = F.conv2d(x * y, w) - mx * my
    # Distortion model y = g x + v: gain g and additive noise variance sv per local window.
    g = sxy / (sx + _VIF_EPS)
    sv = sy - g * sxy
    flat_ref = sx < _VIF_EPS  # no reference signal: all of y is noise
    g, sv = g.masked_fill(flat_ref, 0.0), torch.where(flat_ref, sy, sv)
    sx = sx.masked_fill(flat_ref, 0.0)
    flat_dist = sy < _VIF_EPS  # no distorted signal: nothing passes
    g, sv = g.masked_fill(flat_dist, 0.0), sv.masked_fill(flat_dist, 0.0)
    negative = g < 0  # a negative gain carries no information: treat as pure noise
    sv, g = torch.where(negative, sy, sv), g.masked_fill(negative, 0.0)
    sv = sv.clamp_min(_VIF_EPS)
    num = torch.log10(1 + g * g * sx / (sv + _VIF_SIGMA_NSQ)).sum()
    den = torch.log10(1 + sx / _VIF_SIGMA_NSQ).sum()
    return num, den


def vif(gt: ArrayLike, pred: ArrayLike, data_range: float | None = None) -> float:
    """Pixel-domain visual information fidelity (VIF-P, Sheikh & Bovik 2006), volume ``(S, H, W)``.

    Four scales; at scale s (1..4) a Gaussian window of size N = 2^(4-s+1)+1 and sigma N/5; between
    scales the images are filtered with that scale's window ("valid") and decimated by 2; the
    visual noise variance is 2. Because sigma_nsq = 2 is defined for 0..255 intensities, both
    images are first scaled by ``255 / data_range`` (None -> gt max), so VIF does not depend on the
    units. Information sums are pooled over all slices and scales before the ratio. Identical
    images give 1; noise and blur lower it. Slices must be at least 41x41.
    """
    g, p = _volume_pair(gt, pred)
    scale = 255.0 / _data_range(g, data_range)
    x, y = g[:, None] * scale, p[:, None] * scale
    num = torch.zeros((), dtype=torch.float64, device=g.device)
    den = torch.zeros((), dtype=torch.float64, device=g.device)
    for s in range(1, 5):
        n = 2 ** (4 - s + 1) + 1
        w = _gaussian_window(n, g.device)
        if s > 1:
            x, y = F.conv2d(x, w)[..., ::2, ::2], F.conv2d(y, w)[..., ::2, ::2]
        if min(x.shape[-2:]) < n:
            raise MrdistillError(f"vif needs slices of at least 41x41; got {tuple(g.shape[-2:])}")
        n_s, d_s = _vif_scale_terms(x, y, w)
        num, den = num + n_s, den + d_s
    return float(num / den)


METRICS: dict[str, MetricFn] = {
    "nmse": nmse,
    "psnr": psnr,
    "ssim": ssim,
    "hfen": hfen,
    "hfen_laplace": hfen_laplace,
    "vif": vif,
}


def volume_metrics(
    gt: ArrayLike,
    pred: ArrayLike,
    data_range: float | None = None,
    names: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """The named metrics of one volume ``(S, H, W)``, all with the same data range (None -> gt max)."""
    for name in names:  # validate every name before spending time on any metric
        check_choice("metric", name, tuple(METRICS))
    g, p = _volume_pair(gt, pred)
    peak = _data_range(g, data_range)
    return {name: METRICS[name](g, p, peak) for name in names}


def slice_metrics(
    gt2d: ArrayLike,
    pred2d: ArrayLike,
    data_range: float | None,
    names: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """The named metrics of one slice ``(H, W)``; pass the *volume* data range for per-slice CSVs."""
    g, p = torch.as_tensor(gt2d), torch.as_tensor(pred2d)
    if g.ndim != 2 or g.shape != p.shape:
        raise MrdistillError(
            f"slice_metrics expects two (H, W) images; got {tuple(g.shape)} and {tuple(p.shape)}"
        )
    return volume_metrics(g[None], p[None], data_range, names)


def aggregate(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, 2 * sd)`` of per-volume values, as Python floats.

    The sd is the sample sd (ddof=1, as fastMRI's runstats); a single value gets sd 0. NaNs propagate.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise MrdistillError("cannot aggregate an empty list of metric values")
    mean = math.fsum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, 2.0 * math.sqrt(var)
