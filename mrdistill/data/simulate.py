"""Image -> k-space simulation: pure functions, seeded, never touching global RNG state."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mrdistill.data.coils import simulate_coil_maps
from mrdistill.physics.fft import fft2c


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """float (H, W) -> float32 (size, size): zero-pad to a centred square, then area-resize."""
    h, w = image.shape
    side = max(h, w)
    padded = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    padded[top:top + h, left:left + w] = image
    t = torch.from_numpy(padded)[None, None]
    if side != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0, 0].clamp_min(0).numpy()


def foreground_fraction(image: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of pixels above `threshold` x the slice max (0 for an empty slice)."""
    peak = float(image.max())
    return 0.0 if peak <= 0 else float((image > threshold * peak).mean())


def smooth_phase(shape: tuple[int, int], seed: int, max_radians: float = np.pi) -> Tensor:
    """A smooth random phase map float32 (H, W): low-order 2-D polynomial in [-max, max]."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    terms = [np.ones_like(xx), xx, yy, xx * yy, xx**2, yy**2]
    coeffs = rng.uniform(-1.0, 1.0, size=len(terms))
    phase = sum(c * t for c, t in zip(coeffs, terms))
    phase = phase / (np.abs(phase).max() + 1e-8) * max_radians
    return torch.from_numpy(phase.astype(np.float32))


def simulate_kspace(image: Tensor, mode: str, seed: int, noise_std: float = 0.0,
                    coils: int = 1, noise_seed: int | None = None) -> tuple[Tensor, Tensor]:
    """Real image float32 (H, W) -> (full k-space complex64 (C, H, W), complex image (1, H, W)).

    mode "real": the image itself (KD-MRI); "complex": times a smooth synthetic phase. coils > 1:
    C coil images S_c x with `coils.simulate_coil_maps` (sum_c |S_c|^2 = 1, so the RSS of the coil
    images is |x|). Optional complex Gaussian noise of std `noise_std` per real/imag component is
    added in k-space, drawn from `noise_seed` (default `seed + 1`).
    """
    img = image.to(torch.complex64)
    if mode == "complex":
        img = img * torch.polar(torch.ones_like(image), smooth_phase(tuple(image.shape), seed))
    coil_images = simulate_coil_maps(coils, tuple(image.shape)) * img if coils > 1 else img[None]
    kspace = fft2c(coil_images)
    if noise_std > 0:
        gen = torch.Generator().manual_seed(seed + 1 if noise_seed is None else noise_seed)
        noise = torch.randn((2, *kspace.shape), generator=gen) * noise_std
        kspace = kspace + torch.complex(noise[0], noise[1])
    return kspace, img[None]
