"""fastMRI's U-Net baseline (Ronneberger et al. 2015 as configured by Zbontar et al. 2018),
weight-compatible with `fastmri.models.Unet` (fastMRI 0.3.0): the same submodule names and
parameter shapes, so a fastMRI `*_state_dict.pt` loads with `load_state_dict` as it is.

Structure (`num_pool_layers` = P, `chans` = c):
  down_sample_layers.{0..P-1}: ConvBlock  in -> c, c -> 2c, ..., each followed by 2x2 average pooling
  conv:                         ConvBlock  c 2^(P-1) -> c 2^P           (the bottleneck)
  up_transpose_conv.{0..P-1}:   2x2 stride-2 transposed conv (no bias), instance norm, LeakyReLU 0.2
  up_conv.{0..P-2}:             ConvBlock on [upsampled, skip]; up_conv.{P-1} = (ConvBlock, 1x1 conv + bias)
ConvBlock = (3x3 conv without bias, instance norm, LeakyReLU 0.2, dropout) twice. Odd sizes: the
upsampled map is reflect-padded by one pixel on the right/bottom to meet its skip connection.

Activations are not in-place (unlike fastMRI's), so a forward hook's captured output is never
overwritten; the arithmetic is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.coils import rss
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule
from mrdistill.models.registry import register_model
from mrdistill.physics.fft import complex_to_channels, ifft2c

# fastMRI's UnetDataTransform: instance normalisation with this epsilon, then clamping to +-6.
NORM_EPS = 1e-11
NORM_CLAMP = 6.0


class ConvBlock(nn.Module):
    """Two (3x3 conv, instance norm, LeakyReLU 0.2, 2-D dropout); float (N, in, H, W) -> (N, out, H, W)."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans), nn.LeakyReLU(0.2), nn.Dropout2d(drop_prob),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans), nn.LeakyReLU(0.2), nn.Dropout2d(drop_prob))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class TransposeConvBlock(nn.Module):
    """2x2 stride-2 transposed conv, instance norm, LeakyReLU 0.2; (N, in, h, w) -> (N, out, 2h, 2w)."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans), nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def match_skip(up: Tensor, skip: Tensor) -> Tensor:
    """Reflect-pad `up` by one pixel on the right and/or bottom where an odd size was halved."""
    right = int(up.shape[-1] != skip.shape[-1])
    bottom = int(up.shape[-2] != skip.shape[-2])
    return F.pad(up, [0, right, 0, bottom], "reflect") if right or bottom else up


class UnetCore(nn.Module):
    """The plain network: float (N, in_chans, H, W) -> (N, out_chans, H, W); any H, W >= 2^P."""

    def __init__(self, in_chans: int = 1, out_chans: int = 1, chans: int = 32, num_pool_layers: int = 4,
                 drop_prob: float = 0.0) -> None:
        super().__init__()
        if in_chans < 1 or out_chans < 1 or chans < 1 or num_pool_layers < 1:
            raise ValueError("unet needs in_chans, out_chans, chans and num_pool_layers >= 1")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"unet drop_prob must be in [0, 1), got {drop_prob}")
        self.in_chans, self.out_chans, self.chans = in_chans, out_chans, chans
        self.num_pool_layers, self.drop_prob = num_pool_layers, drop_prob
        widths = [chans * 2 ** i for i in range(num_pool_layers + 1)]  # c, 2c, ..., c 2^P
        self.down_sample_layers = nn.ModuleList(
            [ConvBlock(in_chans, chans, drop_prob)]
            + [ConvBlock(widths[i], widths[i + 1], drop_prob) for i in range(num_pool_layers - 1)])
        self.conv = ConvBlock(widths[-2], widths[-1], drop_prob)
        ups = list(reversed(range(num_pool_layers)))  # output width index of each up level
        self.up_transpose_conv = nn.ModuleList([TransposeConvBlock(widths[i + 1], widths[i]) for i in ups])
        self.up_conv = nn.ModuleList([ConvBlock(widths[i + 1], widths[i], drop_prob) for i in ups[:-1]])
        self.up_conv.append(nn.Sequential(ConvBlock(widths[1], widths[0], drop_prob),
                                          nn.Conv2d(widths[0], out_chans, kernel_size=1)))

    def forward(self, x: Tensor, features: dict[str, Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """`run` through `__call__`, so forward hooks on this module (`distill.hooks`) see it."""
        return self.run(x, features)

    def run(self, x: Tensor, features: dict[str, Tensor] | None = None, prefix: str = "") -> Tensor:
        """The network on float (N, in_chans, H, W); with `features`, records
        "{prefix}down{i}" (skip i, 1-based), "{prefix}bottleneck" and "{prefix}up{i}"."""
        skips = []
        for i, layer in enumerate(self.down_sample_layers):
            x = layer(x)
            skips.append(x)
            if features is not None:
                features[f"{prefix}down{i + 1}"] = x
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        x = self.conv(x)
        if features is not None:
            features[f"{prefix}bottleneck"] = x
        for i, (up, conv) in enumerate(zip(self.up_transpose_conv, self.up_conv)):
            skip = skips.pop()
            x = conv(torch.cat([match_skip(up(x), skip), skip], dim=1))
            if features is not None:
                features[f"{prefix}up{i + 1}"] = x
        return x


def instance_normalise(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """fastMRI's `normalize_instance` + clamp: float (N, C, H, W) -> (clamped (x - mean) / (std + eps),
    mean (N, 1, 1, 1), std (N, 1, 1, 1)); mean and (unbiased) std over each sample."""
    flat = x.flatten(1).double()  # float64 statistics: see `varnet.NormUnet.forward_channels`
    mean = flat.mean(dim=1).view(-1, 1, 1, 1).to(x.dtype)
    std = flat.std(dim=1).view(-1, 1, 1, 1).to(x.dtype)
    return ((x - mean) / (std + NORM_EPS)).clamp(-NORM_CLAMP, NORM_CLAMP), mean, std


@register_model("unet")
class UNet(UnetCore, ReconModule):
    """fastMRI's image-domain U-Net under mrdistill's model contract.

    forward(kspace complex64 (N, C, H, W), mask) -> ReconOutput. The input image is the zero-filled
    reconstruction: in_chans 1 = its magnitude (root-sum-of-squares over coils, fastMRI's U-Net
    baseline), in_chans 2C = the C complex coil images as channels. As in fastMRI's data transform the
    input is normalised per slice (mean/std, clamped to +-6) and the output scaled back with the same
    mean/std; fastMRI's 320 x 320 centre crop is not applied (the network runs on the whole grid).
    `image` is float32 (N, out_chans, H, W): the magnitude for out_chans 1, else channels.
    Features: "down{i}", "bottleneck", "up{i}" (i 1-based). No data consistency.
    """

    complex_input = True  # takes complex k-space (predict, export and benchmark simulate it so)
    exportable = True  # deploy.multicoil.UNetGraph

    def __init__(self, in_chans: int = 1, out_chans: int = 1, chans: int = 32, num_pool_layers: int = 4,
                 drop_prob: float = 0.0) -> None:
        super().__init__(in_chans, out_chans, chans, num_pool_layers, drop_prob)
        # Complex k-space in (magnitude or coil channels taken from it); contract values.
        self.in_channels, self.image_channels = in_chans, out_chans

    def forward(self, kspace: Tensor, mask: Tensor | None = None, *,
                return_features: bool = False) -> ReconOutput:
        coil_images = ifft2c(kspace)
        if self.in_chans == 1:
            x = rss(coil_images, dim=1, keepdim=True)
        elif self.in_chans == 2 * kspace.shape[1]:
            x = complex_to_channels(coil_images)
        else:
            raise ValueError(f"unet in_chans {self.in_chans} fits neither the magnitude (1) nor "
                             f"{kspace.shape[1]} complex coil image(s) ({2 * kspace.shape[1]})")
        x, mean, std = instance_normalise(x)
        features: dict[str, Tensor] | None = {} if return_features else None
        out = self.run(x, features) * std + mean
        return ReconOutput(image=out, features=features or {})
