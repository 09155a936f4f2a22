"""Super-resolution data: low-res inputs made the MRI way or the image way, from the same corpus.

The MRI way (`downsample="kspace"`, KD-MRI's): keep the central (H/s, W/s) block of the centred
k-space of the high-res slice and take the magnitude of its inverse FFT, which is what a scanner with
a smaller acquisition matrix measures. The image way (`"area"`): average s x s pixel blocks.

Both are scaled so that a constant image keeps its value. `SRDataset` yields `Sample`s whose
`zero_filled` is the low-res image float32 (1, h, w) (what `input_kind="lowres"` models read, see
`models.base.run_model`) and whose `target` is the high-res slice (1, H, W); `kspace`/`mask` hold the
same information as a k-space problem on the high-res grid (2-D centre-block mask), so k-space
models (`input_kind="kspace"`) can be trained and compared on the very same samples.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mrdistill.config import DataConfig, SuperResConfig
from mrdistill.data.datasets import SliceRecord, build_splits
from mrdistill.data.splits import SPLITS
from mrdistill.data.sample import Sample
from mrdistill.data.simulate import simulate_kspace
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.physics.fft import fft2c, ifft2c
from mrdistill.physics.masks import stable_seed

DOWNSAMPLERS = ("kspace", "area")


def check_scale(shape: tuple[int, ...], scale: int) -> None:
    """`MrdistillError` unless `scale` is an integer >= 2 dividing both image axes."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise MrdistillError(f"super-resolution scale must be an integer >= 2, got {scale!r}")
    if any(n % scale for n in shape[-2:]):
        raise MrdistillError(f"scale factor {scale} does not divide the image size "
                             f"{tuple(shape[-2:])}: choose an image_size that is a multiple of {scale}")


def _block(n: int, scale: int) -> slice:
    """Centred block of n // scale indices on a centred (DC at n // 2) axis of length n."""
    m = n // scale
    start = n // 2 - m // 2
    return slice(start, start + m)


def central_block_mask(shape: tuple[int, int], scale: int) -> Tensor:
    """float32 (1, H, W): 1 on the central (H/s, W/s) k-space block, 0 elsewhere."""
    check_scale(shape, scale)
    mask = torch.zeros(1, *shape)
    mask[:, _block(shape[0], scale), _block(shape[1], scale)] = 1.0
    return mask


def crop_kspace(kspace: Tensor, scale: int) -> Tensor:
    """complex (..., H, W) centred k-space -> its central block complex (..., H/s, W/s)."""
    check_scale(tuple(kspace.shape), scale)
    return kspace[..., _block(kspace.shape[-2], scale), _block(kspace.shape[-1], scale)]


def pad_kspace(kspace: Tensor, scale: int) -> Tensor:
    """complex (..., h, w) centred k-space -> zero-padded (..., s*h, s*w), block in the centre."""
    h, w = kspace.shape[-2:]
    out = kspace.new_zeros(*kspace.shape[:-2], h * scale, w * scale)
    out[..., _block(h * scale, scale), _block(w * scale, scale)] = kspace
    return out


def kspace_downsample(kspace: Tensor, scale: int) -> Tensor:
    """Full centred k-space complex (..., H, W) -> low-res magnitude float32 (..., H/s, W/s)."""
    return ifft2c(crop_kspace(kspace, scale)).abs() / scale


def area_downsample(image: Tensor, scale: int) -> Tensor:
    """float (N, C, H, W) -> float (N, C, H/s, W/s): mean over s x s blocks."""
    check_scale(tuple(image.shape), scale)
    return F.avg_pool2d(image, scale)


def fourier_upsample(image: Tensor, scale: int) -> Tensor:
    """float (N, C, h, w) -> float32 (N, C, s*h, s*w): sinc interpolation (zero-padded k-space),
    real part; the exact inverse of `kspace_downsample` up to the magnitude."""
    return (ifft2c(pad_kspace(fft2c(image), scale)).real * scale).float()


def bicubic_upsample(image: Tensor, scale: int) -> Tensor:
    """float (N, C, h, w) -> float (N, C, s*h, s*w): bicubic interpolation (the SR baseline)."""
    return F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)


class SRDataset(Dataset):
    """Records -> super-resolution `Sample`s (deterministic; computed once per slice, then cached).

    zero_filled: float32 (1, h, w) low-res input; target: float32 (1, H, W); kspace: complex64
    (C, H, W) the central k-space block on the high-res grid ("kspace" downsampling: the measured
    block itself; "area": the k-space of the low-res image); mask: float32 (1, H, W) that block.
    """

    def __init__(self, records: list[SliceRecord], cfg: DataConfig, split: str,
                 sr: SuperResConfig) -> None:
        check_choice("split", split, SPLITS)
        check_choice("super-resolution downsampling", sr.downsample, DOWNSAMPLERS)
        check_scale((cfg.image_size, cfg.image_size), sr.scale)
        self.records, self.cfg, self.split, self.sr = records, cfg, split, sr
        self.mask = central_block_mask((cfg.image_size, cfg.image_size), sr.scale)
        self.max_values: dict[str, float] = {}
        for r in records:
            self.max_values[r.volume] = max(self.max_values.get(r.volume, 0.0), float(r.image.max()))
        self._cache: list[tuple[Tensor, Tensor] | None] = [None] * len(records)

    def __len__(self) -> int:
        return len(self.records)

    def _inputs(self, i: int) -> tuple[Tensor, Tensor]:
        """(kspace complex64 (C, H, W), low-res float32 (1, h, w)) of record i."""
        cached = self._cache[i]
        if cached is None:
            rec, s = self.records[i], self.sr.scale
            image = torch.from_numpy(rec.image)
            full_k, _ = simulate_kspace(image, self.cfg.mode, stable_seed(f"{rec.volume}:{rec.slice_index}"),
                                        self.cfg.noise_std)
            if self.sr.downsample == "kspace":
                lowres = kspace_downsample(full_k, s)
                # root-sum-of-squares over coils: one magnitude channel
                lowres = lowres.square().sum(0, keepdim=True).sqrt()
                kspace = full_k * self.mask + 0.0
            else:
                lowres = area_downsample(image[None, None], s)[0]
                kspace = pad_kspace(fft2c(lowres), s) * s
            cached = (kspace.to(torch.complex64), lowres.float())
            self._cache[i] = cached
        return cached

    def __getitem__(self, i: int) -> Sample:
        rec = self.records[i]
        kspace, lowres = self._inputs(i)
        target = torch.from_numpy(rec.image)[None]
        return Sample(kspace, self.mask, lowres, target, torch.tensor(self.max_values[rec.volume]),
                      rec.volume, rec.slice_index)


def make_sr_datasets(cfg: DataConfig, seed: int = 0) -> dict[str, SRDataset]:
    """train/val/test `SRDataset`s over the same corpus and slab splits as reconstruction."""
    sr = cfg.superres
    if sr is None:
        raise MrdistillError("data.superres is not set: this is not a super-resolution config")
    if cfg.labeled_train_slices is not None:
        raise MrdistillError("data.labeled_train_slices is not supported with data.superres")
    check_choice("super-resolution downsampling", sr.downsample, DOWNSAMPLERS)
    check_scale((cfg.image_size, cfg.image_size), sr.scale)
    records = build_splits(cfg)
    return {split: SRDataset(records[split], cfg, split, sr) for split in SPLITS}


def check_image(arr: np.ndarray) -> np.ndarray:
    """A finite real (S, H, W) stack from an (H, W) image or (S, H, W) stack; else MrdistillError."""
    if np.iscomplexobj(arr):
        arr = np.abs(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > arr.shape[-1]:
        raise MrdistillError(f"image of shape {arr.shape} looks like a colour image with "
                             f"{arr.shape[-1]} channels; give one grayscale channel (H, W) or a "
                             f"slice stack (S, H, W)")
    if arr.ndim not in (2, 3) or min(arr.shape) < 1:
        raise MrdistillError(f"expected a grayscale image (H, W) or a slice stack (S, H, W), "
                             f"got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise MrdistillError("image has non-numeric or non-finite values")
    return arr[None] if arr.ndim == 2 else arr
