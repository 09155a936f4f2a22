"""A CHPNet-style light CNN student (Qiu, Zhang & Li 2025): sub-pixel upsampling, then one U-Net with
shared weights unrolled `iterations` times, each followed by a learnable "reconnect" step.

Super-resolution (scale s >= 2, `input_kind = "lowres"`): a sub-pixel convolution (conv to s^2
channels + PixelShuffle(s)) lifts the low-res image y to v0 on the high-res grid. Iteration i runs the
U-Net as a prior, v = x + U(x), then takes one gradient step on
`1/2 ||D x - y||^2 + eta_i/2 ||x - v||^2`:

    x <- x - delta_i * (PS(conv(D x - y)) + eta_i * (x - v))

with D a learnable strided conv (initialised to area averaging), PS(conv(.)) a learnable sub-pixel
adjoint, delta_i (init 0.1) and eta_i (init 0.9). Both sub-pixel layers start as bilinear
interpolation and the U-Net's last conv starts at zero, so an untrained student already upsamples
like bilinear interpolation followed by data-consistency steps (it learns much faster from there).
Reconstruction (scale = 1, `input_kind = "kspace"`): x starts at the zero-filled image and the data
gradient is the exact `A^H (A x - y)` (centred FFT, mask), so the reconnect step is a soft,
learned data-consistency step. The U-Net downsamples by max-pooling and upsamples by sub-pixel
convolution (no transposed convs, no zero insertion), as the paper argues.

The defaults are sized for CPU training here; the paper's student is `channels=64, levels=4,
iterations=6`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule
from mrdistill.models.registry import register_model
from mrdistill.models.swinir import pad_to_multiple
from mrdistill.models.vdsr import check_input_channels, check_sr_scale
from mrdistill.physics.fft import fft2c, ifft2c, image_to_network, network_to_image


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convs with ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


def subpixel(cin: int, cout: int, scale: int, padding_mode: str = "zeros") -> nn.Sequential:
    """conv(cin -> cout * s^2) + PixelShuffle(s): (N, cin, h, w) -> (N, cout, s*h, s*w)."""
    return nn.Sequential(nn.Conv2d(cin, cout * scale * scale, 3, padding=1, padding_mode=padding_mode),
                         nn.PixelShuffle(scale))


def bilinear_taps(scale: int) -> Tensor:
    """float32 (s, 3): weights on the low-res neighbours (-1, 0, +1) of high-res sub-position a of
    bilinear interpolation (align_corners=False): offset d = (a + 0.5) / s - 0.5."""
    taps = torch.zeros(scale, 3)
    for a in range(scale):
        d = (a + 0.5) / scale - 0.5
        taps[a, 1] = 1.0 - abs(d)
        taps[a, 2 if d > 0 else 0] += abs(d)
    return taps


def init_bilinear(layer: nn.Sequential) -> None:
    """Make a `subpixel(c, c, s, "replicate")` layer start as bilinear interpolation, channel by
    channel (PixelShuffle reads channel c*s^2 + a*s + b as sub-position (a, b) of channel c)."""
    conv: nn.Conv2d = layer[0]
    scale = int(round((conv.out_channels // conv.in_channels) ** 0.5))
    taps = bilinear_taps(scale)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(conv.in_channels):
            for a in range(scale):
                for b in range(scale):
                    conv.weight[c * scale * scale + a * scale + b, c] = torch.outer(taps[a], taps[b])


class SharedUNet(nn.Module):
    """U-Net with `levels` resolutions of `channels` channels; returns the residual (N, C, H, W)."""

    def __init__(self, in_channels: int, channels: int, levels: int) -> None:
        super().__init__()
        if levels < 1:
            raise MrdistillError(f"chpnet needs levels >= 1, got {levels}")
        self.levels = levels
        self.enc = nn.ModuleList(conv_block(in_channels if i == 0 else channels, channels)
                                 for i in range(levels))
        self.up = nn.ModuleList(subpixel(channels, channels, 2) for _ in range(levels - 1))
        self.dec = nn.ModuleList(conv_block(2 * channels, channels) for _ in range(levels - 1))
        self.out = nn.Conv2d(channels, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # the prior starts as the identity: v = x
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, features: dict[str, Tensor] | None, prefix: str) -> Tensor:
        h, w = x.shape[-2:]
        y = pad_to_multiple(x, 2 ** (self.levels - 1))
        skips = []
        for i, block in enumerate(self.enc):
            y = block(y if i == 0 else F.max_pool2d(y, 2))
            skips.append(y)
            if features is not None:
                features[f"{prefix}enc{i + 1}"] = y
        for i in reversed(range(self.levels - 1)):
            y = self.dec[i](torch.cat([self.up[i](y), skips[i]], dim=1))
            if features is not None:
                features[f"{prefix}dec{i + 1}"] = y
        return self.out(y)[..., :h, :w]


@register_model("chpnet")
class CHPNet(ReconModule):
    """forward(lowres float32 (N, in_channels, h, w), None) for scale >= 2, or forward(kspace
    complex64 (N, C, H, W), mask) for scale = 1 -> ReconOutput(image float32 (N, in_channels,
    s*h, s*w), features: "upsample" (v0), per iteration i (1-based) "iter{i}.enc{l}" (N, channels,
    H/2^(l-1), W/2^(l-1)), "iter{i}.dec{l}", "iter{i}.prior" (v) and "iter{i}.out" (x), and "out")."""

    input_kind = "kspace"

    def __init__(self, scale: int = 1, in_channels: int = 1, channels: int = 16, levels: int = 3,
                 iterations: int = 3, delta: float = 0.1, eta: float = 0.9) -> None:
        super().__init__()
        check_sr_scale(scale)
        if in_channels not in (1, 2):
            raise MrdistillError(f"in_channels must be 1 (real) or 2 (complex), got {in_channels}")
        if iterations < 1:
            raise MrdistillError(f"chpnet needs iterations >= 1, got {iterations}")
        self.scale, self.in_channels, self.iterations = scale, in_channels, iterations
        self.input_kind = "lowres" if scale > 1 else "kspace"
        self.complex_input, self.image_channels = in_channels == 2, in_channels
        self.exportable = self.input_kind == "kspace"  # deploy.graphs.CHPNetGraph
        self.unet = SharedUNet(in_channels, channels, levels)
        self.delta = nn.Parameter(torch.full((iterations,), float(delta)))
        self.eta = nn.Parameter(torch.full((iterations,), float(eta)))
        if scale > 1:
            self.lift = subpixel(in_channels, in_channels, scale, "replicate")  # y -> v0
            self.adjoint = subpixel(in_channels, in_channels, scale, "replicate")  # PS(conv(.)) ~ D^T
            self.down = nn.Conv2d(in_channels, in_channels, scale, stride=scale, bias=False)  # D
            init_bilinear(self.lift)
            init_bilinear(self.adjoint)
            with torch.no_grad():  # area averaging over s x s blocks, per channel
                self.down.weight.zero_()
                for c in range(in_channels):
                    self.down.weight[c, c] = 1.0 / scale**2

    def _data_gradient(self, x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        """Gradient of the data term at x (N, C, H, W): learned for SR, exact A^H(Ax - y) for k-space."""
        if self.input_kind == "lowres":
            return self.adjoint(self.down(x) - y)
        assert mask is not None
        complex_input = self.in_channels == 2
        residual = fft2c(network_to_image(x, complex_input)) * mask - y
        return image_to_network(ifft2c(residual), complex_input)

    def forward(self, x: Tensor, mask: Tensor | None = None, *,
                return_features: bool = False) -> ReconOutput:
        features: dict[str, Tensor] | None = {} if return_features else None
        y = x  # low-res image (SR) or acquired k-space (reconstruction)
        if self.input_kind == "lowres":
            check_input_channels(y, self.in_channels, "chpnet")
            v0 = self.lift(y)
        else:
            if mask is None:
                raise MrdistillError("chpnet k-space reconstruction needs the sampling mask")
            v0 = image_to_network(ifft2c(y), self.in_channels == 2)
        est = v0
        for i in range(self.iterations):
            prefix = f"iter{i + 1}."
            prior = est + self.unet(est, features, prefix)
            est = est - self.delta[i] * (self._data_gradient(est, y, mask) + self.eta[i] * (est - prior))
            if features is not None:
                features[f"{prefix}prior"] = prior
                features[f"{prefix}out"] = est
        if features is not None:
            features["upsample"] = v0
            features["out"] = est
        return ReconOutput(est, features or {})
