"""End-to-end VarNet (Sriram et al., MICCAI 2020), weight-compatible with `fastmri.models.VarNet`
(fastMRI 0.3.0): the same submodule names and parameter shapes, so a fastMRI `*_state_dict.pt`
loads with `load_state_dict` as it is.

  sens_net.norm_unet.unet.*   coil maps S from the auto-calibration (ACS) lines: k-space outside
                              the central fully sampled columns is zeroed, each coil image goes through
                              a normalised U-Net (real/imag as 2 channels), and the result is divided
                              by its root-sum-of-squares over coils.
  cascades.{i}.model.unet.*   one normalised U-Net per cascade, on the coil-combined image R(k)
  cascades.{i}.dc_weight      (1,) learned soft data-consistency weight (starts at 1)

Cascade i:  k <- k - dc_weight * M (k - k0) - F(S * NormUnet(sum_c conj(S_c) F^-1(k_c)))
Output: root-sum-of-squares over coils of |F^-1(k)|. F is the centred orthonormal FFT, which is
what fastMRI's `fft2c` computes on its (..., H, W, 2) real views; mrdistill keeps complex64
(N, C, H, W) throughout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.coils import rss
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule
from mrdistill.models.registry import register_model
from mrdistill.models.unet import UnetCore
from mrdistill.physics.fft import channels_to_complex, complex_to_channels, fft2c, ifft2c

PAD_MULTIPLE = 16  # NormUnet pads both image axes up to a multiple of this


def coil_rss(x: Tensor) -> Tensor:
    """complex (N, C, H, W) -> float32 (N, 1, H, W): sqrt(sum_c |x_c|^2)."""
    return rss(x, dim=1, keepdim=True)


def pad_to_multiple(x: Tensor, multiple: int = PAD_MULTIPLE) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Zero-pad float (N, C, H, W) symmetrically (extra pixel at the end) so H and W are multiples of
    `multiple`; returns the padded tensor and (top, bottom, left, right)."""
    h, w = x.shape[-2:]
    dh, dw = -h % multiple, -w % multiple
    pads = (dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
    return F.pad(x, [pads[2], pads[3], pads[0], pads[1]]), pads


class NormUnet(nn.Module):
    """U-Net on complex images normalised per sample: complex (N, C, H, W) -> complex (N, C, H, W).

    The channels [real_0.., imag_0..] are standardised with one mean and (unbiased) std for all real
    and one for all imaginary channels, zero-padded to multiples of 16, run through the U-Net, and
    cropped and scaled back.
    """

    def __init__(self, chans: int, num_pools: int, in_chans: int = 2, out_chans: int = 2,
                 drop_prob: float = 0.0) -> None:
        super().__init__()
        self.unet = UnetCore(in_chans, out_chans, chans, num_pools, drop_prob)

    def forward(self, x: Tensor, features: dict[str, Tensor] | None = None, prefix: str = "") -> Tensor:
        return channels_to_complex(self.forward_channels(complex_to_channels(x), features, prefix))

    def forward_channels(self, chan: Tensor, features: dict[str, Tensor] | None = None,
                         prefix: str = "") -> Tensor:
        """The same on the channel layout: float (N, 2C, H, W) [re_1..re_C, im_1..im_C] -> the same
        layout (what exported graphs, which hold no complex tensors, call)."""
        n, c2, h, w = chan.shape
        c = c2 // 2
        # Statistics in float64: their rounding is amplified by mean/std, and float32 sums round
        # differently in other runtimes (ONNX Runtime's naive sums: ~1e-5 relative at 320 x 320).
        parts = chan.reshape(n, 2, c * h * w).double()
        mean = parts.mean(dim=2).view(n, 2, 1, 1, 1).to(chan.dtype)
        std = parts.std(dim=2).view(n, 2, 1, 1, 1).to(chan.dtype)
        normed = ((chan.view(n, 2, c, h, w) - mean) / std).view(n, 2 * c, h, w)
        padded, (top, bottom, left, right) = pad_to_multiple(normed)
        inner: dict[str, Tensor] | None = {} if features is not None else None
        out = self.unet(padded, inner)
        if features is not None and inner is not None:  # only the bottleneck: the rest is large
            features[f"{prefix}bottleneck"] = inner["bottleneck"]
        out = out[..., top:out.shape[-2] - bottom, left:out.shape[-1] - right]
        out = out.reshape(n, 2, -1, h, w) * std + mean
        return out.reshape(n, -1, h, w)


def acs_bounds(mask: Tensor, num_low_frequencies: int | None) -> tuple[Tensor, Tensor]:
    """First column and count of the central lines the coil maps are estimated from, per sample.

    mask (N, 1, 1|H, W); without `num_low_frequencies` (or with 0) the count is twice the shorter
    distance from the centre column W//2 to the first unsampled column on either side, at least 1;
    a side without any unsampled column counts 0, so a fully sampled mask gives 1 line, exactly as
    fastMRI 0.3.0 counts (its released weights were trained so). Returns (start, count), long (N,).
    """
    w = mask.shape[-1]
    if num_low_frequencies:
        count = torch.full((mask.shape[0],), num_low_frequencies, dtype=torch.long, device=mask.device)
    else:
        line = (mask[:, 0, mask.shape[-2] // 2, :] != 0).to(torch.int8)  # the centre row of a 2-D mask
        centre = w // 2
        # argmin = index of the first unsampled column (0 when there is none): from centre-1
        # leftwards and from centre rightwards.
        left = torch.argmin(line[:, :centre].flip(1), dim=1)
        right = torch.argmin(line[:, centre:], dim=1)
        count = torch.clamp(2 * torch.minimum(left, right), min=1)
    return (w - count + 1) // 2, count


class SensitivityModel(nn.Module):
    """Coil maps from the ACS lines: kspace complex (N, C, H, W), mask -> maps complex (N, C, H, W)
    with sum_c |S_c|^2 = 1 per pixel."""

    def __init__(self, chans: int, num_pools: int, in_chans: int = 2, out_chans: int = 2,
                 drop_prob: float = 0.0, mask_center: bool = True) -> None:
        super().__init__()
        self.mask_center = mask_center
        self.norm_unet = NormUnet(chans, num_pools, in_chans, out_chans, drop_prob)

    def forward(self, kspace: Tensor, mask: Tensor, num_low_frequencies: int | None = None,
                features: dict[str, Tensor] | None = None) -> Tensor:
        n, c, h, w = kspace.shape
        if self.mask_center:
            start, count = acs_bounds(mask, num_low_frequencies)
            cols = torch.arange(w, device=kspace.device)
            keep = (cols >= start[:, None]) & (cols < (start + count)[:, None])  # (N, W)
            kspace = kspace * keep[:, None, None, :]
        coil_images = ifft2c(kspace).reshape(n * c, 1, h, w)  # each coil on its own
        inner: dict[str, Tensor] | None = {} if features is not None else None
        maps = self.norm_unet(coil_images, inner).reshape(n, c, h, w)
        if features is not None and inner is not None:  # (N C, ch, h, w) -> one entry per slice
            bottleneck = inner["bottleneck"]
            features["sens.bottleneck"] = bottleneck.reshape(n, -1, *bottleneck.shape[-2:])
        return maps / coil_rss(maps)


class VarNetBlock(nn.Module):
    """One cascade: soft data consistency plus a U-Net refinement of the coil-combined image."""

    def __init__(self, model: NormUnet) -> None:
        super().__init__()
        self.model = model
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(self, k: Tensor, k0: Tensor, mask: Tensor, maps: Tensor,
                features: dict[str, Tensor] | None = None, prefix: str = "") -> Tensor:
        """k, k0 (acquired), maps: complex (N, C, H, W); mask (N, 1, 1|H, W) -> updated k-space."""
        soft_dc = torch.where(mask != 0, k - k0, torch.zeros_like(k)) * self.dc_weight
        combined = (ifft2c(k) * maps.conj()).sum(dim=1, keepdim=True)  # R: (N, 1, H, W)
        refined = self.model(combined, features, prefix)
        return k - soft_dc - fft2c(maps * refined)


@register_model("varnet")
class VarNet(ReconModule):
    """forward(kspace complex64 (N, C, H, W), mask (N, 1, 1|H, W), *, num_low_frequencies=None)
    -> ReconOutput with `image` float32 (N, 1, H, W), the root-sum-of-squares reconstruction.

    Defaults are fastMRI's (12 cascades, chans 18, sens_chans 8, 4 pools each: 29,936,966
    parameters). Works with one coil too (the map is then |S| = 1 with the estimated phase).
    Features (i = 1..num_cascades): "sens_maps" (N, 2C, H, W) channels, "sens.bottleneck",
    "cascade{i}.kspace" (N, 2C, H, W) channels, "cascade{i}.image" (N, 2, H, W) the coil-combined
    complex image R(k_i), "cascade{i}.bottleneck" (N, 2^pools chans, H'/2^pools, W'/2^pools) with
    H', W' padded to multiples of 16.
    """

    image_channels = 1  # the root-sum-of-squares magnitude
    complex_input = True  # takes complex k-space (predict, export and benchmark simulate it so)
    exportable = True  # deploy.multicoil.VarNetGraph

    def __init__(self, num_cascades: int = 12, sens_chans: int = 8, sens_pools: int = 4,
                 chans: int = 18, pools: int = 4, mask_center: bool = True) -> None:
        super().__init__()
        if num_cascades < 1:
            raise ValueError(f"varnet num_cascades must be >= 1, got {num_cascades}")
        if max(sens_pools, pools) > int(math.log2(PAD_MULTIPLE)):
            raise ValueError(f"varnet pools and sens_pools must be <= {int(math.log2(PAD_MULTIPLE))} "
                             f"(images are padded to multiples of {PAD_MULTIPLE})")
        self.sens_net = SensitivityModel(sens_chans, sens_pools, mask_center=mask_center)
        self.cascades = nn.ModuleList([VarNetBlock(NormUnet(chans, pools)) for _ in range(num_cascades)])

    def forward(self, kspace: Tensor, mask: Tensor, *, num_low_frequencies: int | None = None,
                return_features: bool = False) -> ReconOutput:
        features: dict[str, Tensor] | None = {} if return_features else None
        kspace = kspace.to(torch.complex64)
        maps = self.sens_net(kspace, mask, num_low_frequencies, features)
        k = kspace
        for i, cascade in enumerate(self.cascades, start=1):
            k = cascade(k, kspace, mask, maps, features, f"cascade{i}.")
            if features is not None:
                features[f"cascade{i}.kspace"] = complex_to_channels(k)
                features[f"cascade{i}.image"] = complex_to_channels(
                    (ifft2c(k) * maps.conj()).sum(dim=1, keepdim=True))
        if features is not None:
            features["sens_maps"] = complex_to_channels(maps)
        return ReconOutput(image=coil_rss(ifft2c(k)), features=features or {})
