"""Export graphs: each exportable model re-expressed on plain real tensors, data consistency inside.

A graph wraps the trained model's own layers (the same parameters) and replaces its complex FFT
data-consistency algebra by `projection.Projection` (real matmuls). Inputs, all float32:
- kspace (N, C, H, W, 2): acquired (masked) k-space, real/imaginary last (C = 1 single-coil);
- mask (1|N, 1, 1, W) for the column form, (1|N, 1, H, W) for the grid form; 1 = sampled;
- smaps (N, C, H, W, 2): coil sensitivities, only for a MoDL that combines coils with them.
Outputs: image float32 (N, 1, H, W), the scored image (`physics.fft.magnitude` of raw: the real
image in real mode, root-sum-of-squares magnitude in complex mode), and raw float32 (N, C_net, H, W),
the network's own layout (real/imag channels in complex mode). Equal to the eager model up to
float32 rounding (checked by `deploy.parity`).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from mrdistill.deploy.cg import pair_conjugate_gradient
from mrdistill.deploy.dft import Pair, cconj_mul, cmul, from_channels, make_fft, to_channels
from mrdistill.deploy.multicoil import UNetGraph, VarNetGraph
from mrdistill.deploy.projection import Projection, to_pair
from mrdistill.errors import MrdistillError
from mrdistill.models.chpnet import CHPNet
from mrdistill.models.contract import declared
from mrdistill.models.dccnn import DCCNN
from mrdistill.models.modl import MoDL
from mrdistill.models.registry import list_models, model_class, registered_name
from mrdistill.models.unet import UNet
from mrdistill.models.varnet import VarNet
from mrdistill.models.vdsr import VDSR
from mrdistill.physics.fft import magnitude


def net_image(z: Pair, complex_input: bool) -> Tensor:
    """A complex image pair (N, C, H, W) -> the network layout (`physics.fft.image_to_network`)."""
    return to_channels(z) if complex_input else z[0]


def net_pair(x: Tensor, complex_input: bool) -> Pair:
    """The network layout -> complex image pair (`physics.fft.network_to_image`)."""
    return from_channels(x) if complex_input else (x, torch.zeros_like(x))


def net_project(proj: Projection, ops: tuple[Tensor, ...], x: Tensor, complex_input: bool) -> Tensor:
    """P applied to a network tensor x (N, C_net, H, W), result in the network layout (real mode
    keeps the real part, as the eager DC does)."""
    if complex_input:
        re, im = x.chunk(2, dim=1)
        return net_image(proj.project(ops, re, im), True)
    return proj.project_real(ops, x)


class ReconGraph(nn.Module):
    """Base of the single-coil cascade graphs: forward(kspace, mask) -> (image, raw)."""

    def __init__(self, proj: Projection, complex_input: bool) -> None:
        super().__init__()
        self.proj, self.complex_input = proj, complex_input

    def inputs(self, kspace: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """(zero-filled ifft2c(k), b = ifft2c(mask * k), projection ops), both images in the
        network layout."""
        k = to_pair(kspace)
        zf = net_image(self.proj.ifft2c(k), self.complex_input)
        b = net_image(self.proj.ifft2c((k[0] * mask, k[1] * mask)), self.complex_input)
        return zf, b, self.proj.bind(mask)

    def dc(self, x: Tensor, b: Tensor, ops: tuple[Tensor, ...], a: float) -> Tensor:
        """Hard (a = 1) or soft (a = lam / (1 + lam)) DC: x + a (b - P(x))."""
        step = b - net_project(self.proj, ops, x, self.complex_input)
        return x + step if a == 1.0 else x + a * step


class DCCNNGraph(ReconGraph):
    """`DCCNN` (any variant) with DC as `ReconGraph.dc`."""

    def __init__(self, model: DCCNN, proj: Projection) -> None:
        super().__init__(proj, model.complex_input)
        self.cascades = copy.deepcopy(model.cascades)
        self.residual = model.residual
        lambdas = None if model.lambdas is None else model.lambdas.detach().double().tolist()
        self.scales = [1.0] * len(self.cascades) if lambdas is None else [lam / (1 + lam) for lam in lambdas]

    def forward(self, kspace: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x, b, ops = self.inputs(kspace, mask)
        for cascade, a in zip(self.cascades, self.scales):
            out = cascade(x, None, "")
            x = self.dc(x + out if self.residual else out, b, ops, a)
        return magnitude(x), x


class VDSRGraph(ReconGraph):
    """`VDSR` with scale 1 (k-space reconstruction): residual convs, then hard DC (if enabled)."""

    def __init__(self, model: VDSR, proj: Projection) -> None:
        super().__init__(proj, model.in_channels == 2)
        self.convs = copy.deepcopy(model.convs)
        self.use_dc = model.dc

    def forward(self, kspace: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        inp, b, ops = self.inputs(kspace, mask)
        h = inp
        for j, conv in enumerate(self.convs):
            h = conv(h)
            if j < len(self.convs) - 1:
                h = torch.relu(h)
        out = inp + h
        if self.use_dc:
            out = self.dc(out, b, ops, 1.0)
        return magnitude(out), out


class CHPNetGraph(ReconGraph):
    """`CHPNet` with scale 1: the shared U-Net prior and the reconnect step, whose data gradient
    A^H (A x - y) = P(x) - ifft2c(y)."""

    def __init__(self, model: CHPNet, proj: Projection) -> None:
        super().__init__(proj, model.in_channels == 2)
        self.unet = copy.deepcopy(model.unet)
        self.register_buffer("delta", model.delta.detach().clone(), persistent=False)
        self.register_buffer("eta", model.eta.detach().clone(), persistent=False)

    def forward(self, kspace: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        zf, _, ops = self.inputs(kspace, mask)
        est = zf
        for i in range(self.delta.shape[0]):
            prior = est + self.unet(est, None, "")
            grad = net_project(self.proj, ops, est, self.complex_input) - zf
            est = est - self.delta[i] * (grad + self.eta[i] * (est - prior))
        return magnitude(est), est


class MoDLGraph(nn.Module):
    """`MoDL`: shared denoiser + CG data consistency on (A^H A + lam I) x = A^H y + lam z, with
    A^H A v = sum_c conj(S_c) P(S_c v) (coil maps) or P(v) per coil image (none).
    forward(kspace, mask[, smaps]) -> (image, raw)."""

    def __init__(self, model: MoDL, proj: Projection, with_smaps: bool) -> None:
        super().__init__()
        self.proj, self.with_smaps = proj, with_smaps
        self.denoiser = copy.deepcopy(model.denoiser)
        self.complex_input, self.unrolls, self.cg_iters = model.complex_input, model.unrolls, model.cg_iters
        self.register_buffer("lam", model.lam.detach().clone(), persistent=False)

    def forward(self, kspace: Tensor, mask: Tensor, smaps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        k = to_pair(kspace)
        s = None if smaps is None else to_pair(smaps)
        # The eager operator masks in A and again in A^H, so A^H A projects with mask^2.
        ops = self.proj.bind(mask * mask)
        rhs0 = self._combine(self.proj.ifft2c((k[0] * mask, k[1] * mask)), s)
        lam = self.lam

        def normal(v: Pair) -> Pair:
            if s is None:
                p = self.proj.project(ops, v[0], v[1])
            else:
                p = self._combine(self.proj.project(ops, *cmul(s, v)), s)
            return p[0] + lam * v[0], p[1] + lam * v[1]

        x = rhs0
        for _ in range(self.unrolls):
            net_x = net_image(x, self.complex_input)
            z = net_pair(net_x + self.denoiser(net_x), self.complex_input)
            rhs = (rhs0[0] + lam * z[0], rhs0[1] + lam * z[1])
            x = pair_conjugate_gradient(normal, rhs, z, self.cg_iters)
        raw = net_image(x, self.complex_input)
        return magnitude(raw), raw

    @staticmethod
    def _combine(z: Pair, s: Pair | None) -> Pair:
        """sum_c conj(S_c) z_c over coils (keepdim), or z itself without coil maps."""
        if s is None:
            return z
        re, im = cconj_mul(s, z)
        return re.sum(dim=1, keepdim=True), im.sum(dim=1, keepdim=True)


# The 2-D transform of the graphs that need whole 2-D FFTs (VarNet, U-Net): `deploy.dft.make_fft`.
# "matmul": measured faster than ONNX's DFT operator in ONNX Runtime (docs/deploy.md,
# benchmarks/results/varnet_fft.md).
COIL_GRAPH_FFT = "matmul"
COIL_GRAPHS = {VarNet: VarNetGraph, UNet: UNetGraph}
SINGLE_COIL_GRAPHS = {DCCNN: DCCNNGraph, VDSR: VDSRGraph, CHPNet: CHPNetGraph}


def exportable_models() -> list[str]:
    """Registered model names whose class has an export graph (VDSR and CHPNet: with scale 1)."""
    classes = (MoDL, *COIL_GRAPHS, *SINGLE_COIL_GRAPHS)
    return sorted(name for name in list_models()
                  if isinstance(cls := model_class(name), type) and issubclass(cls, classes))


def build_graph(model: nn.Module, proj: Projection, coils: int,
                fft: str = COIL_GRAPH_FFT) -> tuple[nn.Module, bool]:
    """The export graph of `model` on `proj`'s grid for k-space with `coils` coils, and whether it
    takes coil maps. VarNet and U-Net graphs use the 2-D transform `fft` ("matmul": the
    projection's own DFT matrices; "operator": ONNX's DFT). Raises `MrdistillError` (one line:
    why) for models that cannot be exported."""
    name, contract = registered_name(model), declared(model)
    for cls, coil_graph in COIL_GRAPHS.items():
        if isinstance(model, cls):
            transform = proj if fft == "matmul" else make_fft(fft, proj.height, proj.width)
            return coil_graph(model, transform, coils), False
    if contract.input_kind != "kspace":
        raise MrdistillError(f"{name} with scale {contract.scale} is a super-resolution "
                             "model (low-res image input): export covers k-space reconstruction only")
    if isinstance(model, MoDL):
        with_smaps = model.images == 1 and coils > 1
        if not with_smaps and coils != model.images:
            raise MrdistillError(f"modl was built for {model.images} coil image(s) per sample "
                                 f"(in_channels {2 * model.images}), not {coils} coils")
        return MoDLGraph(model, proj, with_smaps), with_smaps
    for cls, graph in SINGLE_COIL_GRAPHS.items():
        if isinstance(model, cls):
            if coils != 1:
                raise MrdistillError(f"{name} reconstructs single-coil k-space; --coils must be 1, "
                                     f"got {coils}")
            return graph(model, proj), False
    raise MrdistillError(f"{name} cannot be exported (exportable: {', '.join(exportable_models())}; "
                         "k-space reconstruction)")
