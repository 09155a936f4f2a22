"""MoDL (Aggarwal et al. 2019): one shared CNN denoiser with a residual, unrolled N times, each
unroll followed by data consistency solved by conjugate gradients.

Unroll i:  z = x + D(x);  x = argmin_x ||A x - y||^2 + lam ||x - z||^2, i.e.
           (A^H A + lam I) x = A^H y + lam z, solved with `cg_iters` CG steps.
lam > 0 is learnable (softplus of a free parameter). The adaptive-KD teachers of Wu & Li use
`modl(unrolls=5, convs=9, channels=64, in_channels=2, cg_iters=10, lam=0.05)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule
from mrdistill.models.registry import register_model
from mrdistill.physics.consistency import conjugate_gradient
from mrdistill.physics.fft import image_to_network, network_to_image
from mrdistill.physics.operators import MRIOperator


class Denoiser(nn.Module):
    """conv(in->ch), (convs-2) x conv(ch->ch), conv(ch->in), 3x3, ReLU between (optional batch norm)."""

    def __init__(self, in_channels: int, convs: int, channels: int, batchnorm: bool) -> None:
        super().__init__()
        widths = [in_channels] + [channels] * (convs - 1) + [in_channels]
        layers: list[nn.Module] = []
        for i in range(convs):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=not batchnorm))
            if i < convs - 1:
                if batchnorm:
                    layers.append(nn.BatchNorm2d(widths[i + 1]))
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """float (N, in, H, W) -> (N, in, H, W): the residual correction."""
        return self.net(x)


class _ImplicitCG(torch.autograd.Function):
    """x = (A^H A + lam I)^{-1} rhs by CG, differentiated implicitly: the backward pass solves the
    same Hermitian system for the incoming gradient instead of back-propagating through the CG
    iterations (whose step sizes become 0/0 once CG has converged, e.g. in 2 steps on single-coil
    Cartesian data, and then give NaN gradients)."""

    @staticmethod
    def forward(ctx, rhs: Tensor, lam: Tensor, x0: Tensor, op: MRIOperator,  # type: ignore[override]
                iters: int) -> Tensor:
        x = conjugate_gradient(lambda v: op.AHA(v) + lam * v, rhs, x0=x0, iters=iters)
        ctx.save_for_backward(x, lam)
        ctx.op, ctx.iters = op, iters
        return x

    @staticmethod
    def backward(ctx, grad_x: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, lam = ctx.saved_tensors
        g = conjugate_gradient(lambda v: ctx.op.AHA(v) + lam * v, grad_x, iters=ctx.iters)
        # d x / d lam = -(A^H A + lam I)^{-1} x, and the system is Hermitian.
        grad_lam = -(g.conj() * x).real.sum().reshape(lam.shape)
        return g, grad_lam, None, None, None


def dc_solve(op: MRIOperator, rhs0: Tensor, z: Tensor, lam: Tensor, iters: int) -> Tensor:
    """Solve (A^H A + lam I) x = A^H y + lam z by CG (warm start at z), implicit gradients.

    rhs0 = A^H y and z: complex64 image (N, 1|C, H, W); lam: positive real scalar tensor.
    """
    return _ImplicitCG.apply(rhs0 + lam * z, lam, z.detach(), op, iters)


@register_model("modl")
class MoDL(ReconModule):
    """forward(kspace complex64 (N, C, H, W), mask (N, 1, 1|H, W), *, smaps=None) -> ReconOutput.

    in_channels: the network layout of the image (as in DC-CNN): 1 = real-image mode (single coil;
    the real part is kept after each DC), 2 = complex single-coil or coil-combined with coil maps
    `smaps` complex (N, C, H, W), 2C = the C coil images of multi-coil data without maps, denoised
    jointly. `image` is float32 (N, in_channels, H, W). Features with `return_features`:
    "unroll{i}.denoised" (z) and "unroll{i}.out" (x after DC), 1-based, network layout.
    """

    accepts_smaps = True  # multi-coil: run_model passes Sample.smaps

    def __init__(self, unrolls: int = 5, convs: int = 9, channels: int = 64, in_channels: int = 1,
                 cg_iters: int = 10, lam: float = 0.05, batchnorm: bool = False) -> None:
        super().__init__()
        if unrolls < 1 or convs < 2 or cg_iters < 1:
            raise ValueError("modl needs unrolls >= 1, convs >= 2 and cg_iters >= 1")
        if in_channels < 1 or (in_channels > 1 and in_channels % 2):
            raise ValueError(f"modl in_channels must be 1 (real) or even (complex), got {in_channels}")
        if lam <= 0:
            raise ValueError(f"modl lam must be > 0, got {lam}")
        self.unrolls, self.cg_iters = unrolls, cg_iters
        self.complex_input = in_channels > 1
        self.images = in_channels // 2 if self.complex_input else 1  # complex images per sample
        self.in_channels = self.image_channels = in_channels
        self.exportable = True  # deploy.graphs.MoDLGraph
        self.denoiser = Denoiser(in_channels, convs, channels, batchnorm)
        # softplus(raw) = lam keeps lam positive while it learns.
        self.raw_lam = nn.Parameter(torch.tensor(math.log(math.expm1(lam)), dtype=torch.float32))

    @property
    def lam(self) -> Tensor:
        """The current DC weight lam > 0 (scalar)."""
        return F.softplus(self.raw_lam)

    def forward(self, kspace: Tensor, mask: Tensor, *, smaps: Tensor | None = None,
                return_features: bool = False) -> ReconOutput:
        op = MRIOperator(mask, smaps)
        rhs0 = op.AH(kspace)
        if rhs0.shape[1] != self.images:
            raise ValueError(f"modl built for {self.images} image(s) per sample (in_channels), got "
                             f"{rhs0.shape[1]} (with coil maps use in_channels=2)")
        lam = self.lam
        features: dict[str, Tensor] = {}
        x = rhs0
        for i in range(self.unrolls):
            net_x = image_to_network(x, self.complex_input)
            z = net_x + self.denoiser(net_x)
            x = dc_solve(op, rhs0, network_to_image(z, self.complex_input), lam, self.cg_iters)
            if return_features:
                features[f"unroll{i + 1}.denoised"] = z
                features[f"unroll{i + 1}.out"] = image_to_network(x, self.complex_input)
        return ReconOutput(image=image_to_network(x, self.complex_input), features=features)
