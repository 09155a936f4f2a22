"""VDSR (Kim et al. 2016) as KD-MRI uses it for MRI super-resolution, and the bicubic baseline.

`layers` 3x3 convs (1->64, (layers-2) x 64->64, 64->1), ReLU after every conv but the last, and a
global residual `x + net(x)` on the interpolated image x. KD-MRI's teacher is `layers=11`
(333,569 parameters) and its student `layers=7` (185,857); the interpolation has no parameters.

scale >= 2 makes a super-resolution model (`input_kind = "lowres"`): forward(lowres float (N, C, h, w))
interpolates to (s*h, s*w) first ("fourier": zero-padded k-space, what KD-MRI's inputs are; or
"bicubic"). scale = 1 makes a k-space reconstruction model: x is the zero-filled image and a hard DC
step follows the residual (switch it off with dc=False).

Where the magnitude is taken. The SR model above interpolates the low-res *magnitude* (magnitude
before zero-padded upsampling). KD-MRI's VDSR input is the magnitude of the inverse FFT of the
zero-padded central k-space block (magnitude *after* upsampling): that is
`vdsr(scale=1, kspace_input="magnitude", dc=False)` run on super-resolution data, whose samples
carry the central block on the high-res grid as `kspace` (`data.superres.SRDataset`).
"""

from __future__ import annotations

from torch import Tensor, nn

from mrdistill.data.superres import bicubic_upsample, fourier_upsample
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule
from mrdistill.models.registry import register_model
from mrdistill.physics.consistency import dc_network_image
from mrdistill.physics.fft import ifft2c, image_to_network

UPSAMPLERS = {"fourier": fourier_upsample, "bicubic": bicubic_upsample}
# How a k-space model (scale 1) turns k-space into its input image: "network" = the network layout
# (real part, or real/imag channels); "magnitude" = root-sum-of-squares magnitude (KD-MRI's SR input).
KSPACE_INPUTS = ("network", "magnitude")


def check_sr_scale(scale: int) -> None:
    """scale 1 (reconstruction) or an integer >= 2 (super-resolution); else `MrdistillError`."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise MrdistillError(f"scale must be 1 (k-space reconstruction) or an integer >= 2 "
                             f"(super-resolution), got {scale!r}")


def check_input_channels(x: Tensor, channels: int, what: str) -> None:
    """`MrdistillError` unless x is float (N, channels, h, w)."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise MrdistillError(f"{what} expects images of shape (N, {channels}, H, W), got "
                             f"{tuple(x.shape)}")


@register_model("vdsr")
class VDSR(ReconModule):
    """forward(kspace complex64 (N, C, H, W), mask) with scale=1, or forward(lowres float32
    (N, in_channels, h, w), None) with scale >= 2 -> ReconOutput(image float32 (N, in_channels,
    s*h, s*w), features "conv{j}" (after conv j and its ReLU, 1-based; the last conv has no ReLU),
    "input" (the interpolated/zero-filled image) and "out")."""

    input_kind = "kspace"

    def __init__(self, layers: int = 11, channels: int = 64, in_channels: int = 1, scale: int = 1,
                 upsampler: str = "fourier", dc: bool = True, kspace_input: str = "network") -> None:
        super().__init__()
        check_sr_scale(scale)
        check_choice("upsampler", upsampler, list(UPSAMPLERS))
        check_choice("vdsr kspace_input", kspace_input, KSPACE_INPUTS)
        if kspace_input == "magnitude" and (scale != 1 or in_channels != 1):
            raise MrdistillError("vdsr kspace_input 'magnitude' needs scale 1 and in_channels 1 "
                                 "(a magnitude image from k-space)")
        self.kspace_input = kspace_input
        if layers < 2:
            raise MrdistillError(f"VDSR needs at least 2 layers, got {layers}")
        if in_channels not in (1, 2):
            raise MrdistillError(f"in_channels must be 1 (real) or 2 (complex), got {in_channels}")
        self.scale, self.upsampler, self.dc = scale, upsampler, dc
        self.in_channels = in_channels
        self.input_kind = "lowres" if scale > 1 else "kspace"
        self.complex_input, self.image_channels = in_channels == 2, in_channels
        self.exportable = self.input_kind == "kspace"  # deploy.graphs.VDSRGraph
        widths = [in_channels] + [channels] * (layers - 1) + [in_channels]
        self.convs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1)
                                   for i in range(layers))
        self.act = nn.ReLU()

    def forward(self, x: Tensor, mask: Tensor | None = None, *,
                return_features: bool = False) -> ReconOutput:
        features: dict[str, Tensor] = {}
        if self.input_kind == "lowres":
            check_input_channels(x, self.in_channels, "vdsr")
            inp = UPSAMPLERS[self.upsampler](x, self.scale)
        else:
            kspace = x
            coil_images = ifft2c(kspace)
            if self.kspace_input == "magnitude":
                inp = coil_images.abs().square().sum(dim=1, keepdim=True).sqrt()
            else:
                inp = image_to_network(coil_images, self.in_channels == 2)
        h = inp
        last = len(self.convs) - 1
        for j, conv in enumerate(self.convs):
            h = conv(h)
            if j < last:
                h = self.act(h)
            if return_features:
                features[f"conv{j + 1}"] = h
        out = inp + h
        if self.input_kind == "kspace" and self.dc:
            assert mask is not None, "k-space reconstruction needs the sampling mask"
            out = dc_network_image(out, kspace, mask, self.in_channels == 2)
        if return_features:
            features["input"] = inp
            features["out"] = out
        return ReconOutput(out, features)


class Bicubic(ReconModule):
    """The super-resolution baseline: bicubic interpolation, no parameters (not registered).
    forward(lowres float (N, C, h, w), None) -> ReconOutput(image (N, C, s*h, s*w), {})."""

    input_kind = "lowres"
    complex_input, in_channels, image_channels = False, 1, 1  # any channel count works

    def __init__(self, scale: int) -> None:
        super().__init__()
        check_sr_scale(scale)
        self.scale = scale

    def forward(self, x: Tensor, mask: Tensor | None = None, *,
                return_features: bool = False) -> ReconOutput:
        return ReconOutput(bicubic_upsample(x, self.scale), {})
