"""The conv layers of the fast DC-CNN inference path (`fast_inference.InferenceDCCNN`), per cascade.

A cascade runs as one of two modules, both forward(x float32 (n, C_net, H, W)) -> cascade output
(residual included) float32 (n, C_net, H, W):
- `NativeCascade`: all convs in one call to the compiled streaming kernel (`native.cascade_native`,
  AVX-512): the hidden activations never leave the cache, so the memory-bound first and last convs
  cost little. Used where the kernel is available and the cascade fits it.
- `LayerCascade`: conv by conv: `FusedConv` (oneDNN, prepacked weights, fused activation) for the wide
  convs and `TapConv` (compiled AVX2 kernel or taps matmul) for the narrow last conv.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 - the usual alias

from mrdistill.accel.native import (CASCADE_CHANNELS, cascade_kernel, cascade_native, tapconv_kernel,
                                     tapconv_native)
from mrdistill.accel.parallel import run_chunks, thread_parts

# Output channels up to which a conv runs as "taps matmul + shifted adds" instead of oneDNN.
_TAP_CONV_MAX_OUT = 4
# Fewest output rows per thread when one slice is split into row bands: each band recomputes
# layers - 1 halo rows per side, which at 64 rows costs a 5-conv cascade at most 8 / 64 of a band.
_MIN_BAND_ROWS = 64


def _activation_attr(act: nn.Module | None) -> tuple[str, list[float | None]]:
    """oneDNN post-op name and scalars for the activation that follows a conv."""
    if act is None:
        return "none", [None]
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", [float(act.negative_slope)]
    if isinstance(act, nn.ReLU):
        return "relu", [None]
    raise NotImplementedError(f"no fused form for activation {type(act).__name__}")


class FusedConv(nn.Module):
    """Conv2d (+ activation) with weights reordered once for oneDNN and the activation fused.

    forward: float (n, Cin, H, W) (any memory format; channels_last is fastest) ->
    float (n, Cout, H', W') in channels_last. Where the oneDNN ops are missing (a torch build without
    them), it runs F.conv2d on channels_last tensors and the activation in place instead.
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None, example_shape: tuple[int, ...]) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise NotImplementedError("FusedConv needs numeric zero padding")
        self.geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.weight = conv.weight.detach().clone().contiguous(memory_format=torch.channels_last)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()
        self.act = act
        self.attr, self.scalars = _activation_attr(act)
        try:
            # A plain attribute, not a buffer: the packed tensor is an opaque oneDNN tensor.
            self.packed: Tensor | None = _pack_weight(self.weight, self.geometry, example_shape)
        except (RuntimeError, AttributeError, NotImplementedError):
            self.packed = None

    def forward(self, x: Tensor) -> Tensor:
        padding, stride, dilation, groups = self.geometry
        x = x.contiguous(memory_format=torch.channels_last)
        if self.packed is not None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.packed, self.bias, padding, stride, dilation, groups, self.attr, self.scalars, "")
        y = F.conv2d(x, self.weight, self.bias, stride, padding, dilation, groups)
        if isinstance(self.act, nn.LeakyReLU):
            return F.leaky_relu_(y, self.act.negative_slope)
        return y if self.act is None else F.relu_(y)


def _pack_weight(weight: Tensor, geometry: tuple, example_shape: tuple[int, ...]) -> Tensor:
    """oneDNN's reorder of a conv weight into its blocked layout for inputs of `example_shape`,
    checked with one call (raises RuntimeError/AttributeError where oneDNN is unavailable)."""
    packed = torch.ops.mkldnn._reorder_convolution_weight(weight, *geometry, list(example_shape))
    probe = torch.zeros(1, weight.shape[1] * geometry[3], 4, 4).contiguous(memory_format=torch.channels_last)
    torch.ops.mkldnn._convolution_pointwise(probe, packed, None, *geometry, "none", [None], "")
    return packed


class TapConv(nn.Module):
    """3x3, stride 1, padding 1 conv to few output channels, without oneDNN.

    oneDNN has no efficient kernel for Cout = 1..2 (it costs as much as Cout = 16). Where the compiled
    kernel is available (`native.tapconv_kernel`, AVX2) it computes the conv in one pass over the
    channels-last input. Otherwise taps = W (Cout*9, Cin) @ x^T (Cin, n*H*W) streams the input once at
    matmul speed, and the output is the sum of the 9 tap planes, each shifted by its kernel offset
    (zero padding = skipped edges).
    forward: float (n, Cin, H, W), channels_last preferred -> float (n, Cout, H, W) contiguous for
    Cout = 1 (a permuted view otherwise).
    """

    def __init__(self, conv: nn.Conv2d, native: bool = True) -> None:
        super().__init__()
        if not _is_same_3x3(conv):
            raise NotImplementedError("TapConv needs a 3x3 conv with stride 1, padding 1, no groups")
        self.cout = conv.out_channels
        # Rows ordered (out channel, ky, kx) so that taps[c, 3*ky + kx] is one plane.
        # A contiguous copy: for Cout = 1 the reshape is a strided view, and clone() would keep it.
        weight = conv.weight.detach().permute(0, 2, 3, 1).reshape(self.cout * 9, -1)
        self.weight = weight.clone(memory_format=torch.contiguous_format)
        self.bias = _bias(conv).clone().view(self.cout, 1, 1, 1)
        self.use_native = native and tapconv_kernel() is not None and self.weight.dtype == torch.float32

    def forward(self, x: Tensor) -> Tensor:
        if self.use_native:  # the compiled kernel reads x once, straight from its NHWC rows
            out = tapconv_native(x, self.weight, self.bias.view(-1))
            if out is not None:
                return out
        n, cin, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, cin)  # a view when x is channels_last
        taps = torch.mm(self.weight, rows.t()).view(self.cout, 9, n, h, w)
        out = taps[:, 4] + self.bias  # centre tap (ky = kx = 1) covers every pixel
        for t in (0, 1, 2, 3, 5, 6, 7, 8):
            dy, dx = t // 3 - 1, t % 3 - 1
            # out[y, x] += taps[t][y + dy, x + dx] wherever the source pixel lies inside the image
            out[:, :, _dst(dy, h), _dst(dx, w)] += taps[:, t, :, _src(dy, h), _src(dx, w)]
        return out.permute(1, 0, 2, 3)


def _is_same_3x3(conv: nn.Conv2d) -> bool:
    """True for a 'same' 3x3 conv (stride 1, padding 1, dilation 1, zeros, no groups)."""
    return (tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and conv.groups == 1 and conv.padding_mode == "zeros")


def _dst(shift: int, size: int) -> slice:
    """Output indices that have a source pixel at offset `shift` inside [0, size)."""
    return slice(max(0, -shift), size - max(0, shift))


def _src(shift: int, size: int) -> slice:
    """Source indices (output index + shift) matching `_dst(shift, size)`."""
    return slice(max(0, shift), size + min(0, shift))


def _negative_slope(act: nn.Module) -> float | None:
    """The activation as max(v, 0) + slope * min(v, 0): its slope, or None for any other activation."""
    if isinstance(act, nn.LeakyReLU):
        return float(act.negative_slope)
    return 0.0 if isinstance(act, nn.ReLU) else None


class NativeCascade(nn.Module):
    """A DC-CNN cascade's convs (+ residual) in one call to the compiled streaming kernel.

    Build it only where `NativeCascade.fits(cascade)`; forward raises RuntimeError if the kernel
    refuses the input (the inference path checks itself against eager once, at construction).
    """

    def __init__(self, cascade: nn.Module, residual: bool) -> None:
        super().__init__()
        convs = list(cascade.convs)
        *hidden, last = convs
        # Kernel layouts: (3, 3, Cin, Cout) for the convs to `channels`, (Cout, 3, 3, Cin) for the last.
        flat = [c.weight.detach().permute(2, 3, 1, 0).reshape(-1) for c in hidden]
        flat.append(last.weight.detach().permute(0, 2, 3, 1).reshape(-1))
        self.weights = torch.cat(flat).float().contiguous()
        self.biases = torch.cat([_bias(c) for c in convs]).float().contiguous()
        self.channels, self.out_channels, self.layers = hidden[0].out_channels, last.out_channels, len(convs)
        self.slope = _negative_slope(cascade.act)
        self.residual = residual

    @staticmethod
    def fits(cascade: nn.Module) -> bool:
        """True where the kernel is available and covers this cascade: >= 2 'same' 3x3 convs,
        hidden width 16, 32 or 64 throughout, last conv back to the input width, ReLU/LeakyReLU."""
        convs = list(cascade.convs)
        if cascade_kernel() is None or len(convs) < 2 or _negative_slope(cascade.act) is None:
            return False
        width = convs[0].out_channels
        return (width in CASCADE_CHANNELS and all(_is_same_3x3(c) for c in convs)
                and all(c.in_channels == width for c in convs[1:])
                and all(c.out_channels == width for c in convs[:-1])
                and convs[-1].out_channels == convs[0].in_channels)

    def forward(self, x: Tensor) -> Tensor:
        """x float32 (n, C_net, H, W) -> float32 (n, C_net, H, W). With several intra-op threads and
        enough rows, the rows are split into one band per thread (a call with one slice would
        otherwise run on one core); each band writes its own rows of the output."""
        x = x.contiguous()
        n, _, h, w = x.shape
        out = torch.empty(n, self.out_channels, h, w)
        run_chunks(lambda rows: self._run(x, out, rows), thread_parts(h, most=h // _MIN_BAND_ROWS))
        return out

    def _run(self, x: Tensor, out: Tensor, rows: slice) -> Tensor:
        """Output rows `rows` of every slice of x into out."""
        done = cascade_native(x, self.weights, self.biases, channels=self.channels,
                              out_channels=self.out_channels, layers=self.layers, slope=self.slope,
                              residual=self.residual, rows=(rows.start, rows.stop), out=out)
        if done is None:
            raise RuntimeError(f"the cascade kernel refused an input of {x.dtype} {tuple(x.shape)}")
        return done


class LayerCascade(nn.Module):
    """A DC-CNN cascade conv by conv: `FusedConv` (+activation) for every conv, except `TapConv` for
    a narrow last one (DC-CNN's 32 -> 1|2); then the residual. `native=False` keeps the tap conv on
    torch."""

    def __init__(self, cascade: nn.Module, residual: bool, example_shape: tuple[int, ...],
                 native: bool = True) -> None:
        super().__init__()
        convs = list(cascade.convs)
        layers: list[nn.Module] = []
        shape = example_shape
        for j, conv in enumerate(convs):
            last = j == len(convs) - 1
            if last and conv.out_channels <= _TAP_CONV_MAX_OUT and _is_same_3x3(conv):
                layers.append(TapConv(conv, native=native))
            else:
                layers.append(FusedConv(conv, None if last else cascade.act, shape))
            shape = (shape[0], conv.out_channels, *shape[2:])
        self.layers = nn.ModuleList(layers)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.layers:
            out = layer(out)
        return x + out if self.residual else out


def _bias(conv: nn.Conv2d) -> Tensor:
    """The conv's bias, zeros where it has none: float (Cout,)."""
    return conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
