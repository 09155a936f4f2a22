"""Export graphs of the fastMRI-family models, which see multi-coil k-space whole: E2E-VarNet
(`models.varnet`) and the image-domain U-Net (`models.unet`).

Inputs, float32: kspace (N, C, H, W, 2), the acquired k-space (real/imaginary last; C fixed per
export), and mask (1|N, 1, 1|H, W). Outputs: image float32 (N, 1, H, W), the scored image, and raw
(the model's own output: VarNet's root-sum-of-squares image, the U-Net's output channels).
The 2-D FFTs are a `deploy.dft` transform (`MatmulFFT` or `OperatorFFT`): `fft2c`/`ifft2c` on
(re, im) pairs. The layers are the trained model's own (deep copies, the same parameters).

VarNet: the sensitivity network runs inside the graph, on the auto-calibration lines it finds in
the mask input (`models.varnet.acs_bounds`, per slice, as eager does without
`num_low_frequencies`); each cascade is k <- k - w M (k - k0) - F(S * NormUnet(sum_c conj(S_c)
F^-1(k_c))), with M the sampled entries of the mask input, exactly as `VarNetBlock`.
U-Net: zero-filled coil images of the masked k-space (the mask zeroes what was not acquired; the
U-Net has no data consistency), root-sum-of-squares (in_chans 1) or complex channels (2C),
normalised per slice, the network, scaled back.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from mrdistill.deploy.dft import MatmulFFT, OperatorFFT, Pair, cconj_mul, cmul, from_channels, to_channels
from mrdistill.deploy.projection import to_pair
from mrdistill.errors import MrdistillError
from mrdistill.models.unet import UNet, instance_normalise
from mrdistill.models.varnet import NormUnet, VarNet, VarNetBlock, acs_bounds
from mrdistill.physics.fft import magnitude

Transform = MatmulFFT | OperatorFFT


def pair_rss(z: Pair) -> Tensor:
    """Root-sum-of-squares over coils of a pair (N, C, H, W) -> float (N, 1, H, W)."""
    return torch.sqrt((z[0].square() + z[1].square()).sum(dim=1, keepdim=True))


class ExactInstanceNorm(nn.Module):
    """`nn.InstanceNorm2d` without affine parameters or running statistics, its mean and variance
    accumulated in float64 (the normalisation itself in float32). ONNX Runtime's
    InstanceNormalization and float32 reductions sum naively and lose far more precision than
    torch's on the smooth maps of the sensitivity network, which its U-Net amplifies past the
    parity tolerance at fastMRI sizes. float (N, C, H, W) -> the same."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        wide = x.double()
        mean = wide.mean(dim=(2, 3), keepdim=True)
        var = (wide - mean).square().mean(dim=(2, 3), keepdim=True)
        return (x - mean.to(x.dtype)) * torch.rsqrt(var + self.eps).to(x.dtype)


def exact_norms(module: nn.Module) -> nn.Module:
    """`module` (a copy the graph owns) with every plain `InstanceNorm2d` replaced in place by
    `ExactInstanceNorm`; affine or tracking norms (not used by the U-Nets) are refused."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d):
                if child.affine or child.track_running_stats:
                    raise MrdistillError("export covers instance norms without affine parameters or running stats")
                setattr(parent, name, ExactInstanceNorm(child.eps))
    return module


def norm_unet(net: NormUnet, z: Pair) -> Pair:
    """`NormUnet` on a pair (N, C, H, W)."""
    return from_channels(net.forward_channels(to_channels(z)))


class VarNetGraph(nn.Module):
    """`VarNet` on real tensors: forward(kspace, mask) -> (image, raw = image); see the module
    docstring."""

    how = ("E2E-VarNet: sensitivity network on the ACS lines found in the mask, soft data consistency "
           "in k-space per cascade; centred 2-D DFTs ({fft})")
    raw_meaning = "the root-sum-of-squares image (the same as `image`)"

    def __init__(self, model: VarNet, fft: Transform, coils: int) -> None:
        super().__init__()
        self.fft, self.coils = fft, coils
        self.sens_net = exact_norms(copy.deepcopy(model.sens_net))
        self.cascades = exact_norms(copy.deepcopy(model.cascades))

    def sensitivities(self, k0: Pair, mask: Tensor) -> Pair:
        """Coil maps (N, C, H, W) pair with sum_c |S_c|^2 = 1 (`varnet.SensitivityModel`)."""
        h, w = k0[0].shape[-2:]
        k = k0
        if self.sens_net.mask_center:
            start, count = acs_bounds(mask, None)
            cols = torch.arange(w, device=mask.device)
            keep = ((cols >= start[:, None]) & (cols < (start + count)[:, None])).to(k0[0].dtype)
            keep = keep[:, None, None, :]  # (1|N, 1, 1, W)
            k = (k0[0] * keep, k0[1] * keep)
        images = self.fft.ifft2c(k)  # each coil on its own through the U-Net: (N C, 1, H, W)
        per_coil = (images[0].reshape(-1, 1, h, w), images[1].reshape(-1, 1, h, w))
        maps = norm_unet(self.sens_net.norm_unet, per_coil)
        maps = (maps[0].reshape(-1, self.coils, h, w), maps[1].reshape(-1, self.coils, h, w))
        norm = pair_rss(maps)
        return maps[0] / norm, maps[1] / norm

    def cascade(self, block: VarNetBlock, k: Pair, k0: Pair, sampled: Tensor, maps: Pair) -> Pair:
        """One `VarNetBlock` on pairs."""
        weight = block.dc_weight
        soft = (torch.where(sampled, k[0] - k0[0], torch.zeros_like(k[0])) * weight,
                torch.where(sampled, k[1] - k0[1], torch.zeros_like(k[1])) * weight)
        re, im = cconj_mul(maps, self.fft.ifft2c(k))
        combined = (re.sum(dim=1, keepdim=True), im.sum(dim=1, keepdim=True))  # (N, 1, H, W)
        back = self.fft.fft2c(cmul(maps, norm_unet(block.model, combined)))
        return k[0] - soft[0] - back[0], k[1] - soft[1] - back[1]

    def forward(self, kspace: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        k0 = to_pair(kspace)
        maps = self.sensitivities(k0, mask)
        sampled = mask != 0
        k = k0
        for block in self.cascades:
            k = self.cascade(block, k, k0, sampled, maps)
        image = pair_rss(self.fft.ifft2c(k))
        return image, image


class UNetGraph(nn.Module):
    """`UNet` on real tensors: forward(kspace, mask) -> (image, raw); see the module docstring."""

    how = "none (image-domain U-Net on the zero-filled coil images); centred 2-D inverse DFT ({fft})"
    raw_meaning = "the U-Net's output channels (1: the magnitude image)"

    def __init__(self, model: UNet, fft: Transform, coils: int) -> None:
        super().__init__()
        if model.in_chans not in (1, 2 * coils):
            raise MrdistillError(f"unet in_chans {model.in_chans} fits neither the magnitude (1) nor "
                                 f"{coils} complex coil image(s) ({2 * coils}): check --coils")
        self.fft, self.magnitude_input = fft, model.in_chans == 1
        self.unet = exact_norms(copy.deepcopy(model))

    def forward(self, kspace: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        k = to_pair(kspace)
        images = self.fft.ifft2c((k[0] * mask, k[1] * mask))
        x = pair_rss(images) if self.magnitude_input else to_channels(images)
        x, mean, std = instance_normalise(x)
        out = self.unet.run(x) * std + mean
        return magnitude(out), out
