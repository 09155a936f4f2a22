"""Faster CPU training of 3x3 convolutions in channels_last: each part of a conv by whichever of
oneDNN and mrdistill's compiled kernels is faster for it.

Why: oneDNN runs a 32->32 conv near the machine's matmul rate in channels_last, except its weight
gradient where it runs AVX2 code (a quarter of its forward rate; its AVX-512 code has no such gap
and beats the AVX2 kernel, so `kernel_preferred()` says where). The narrow convs at a cascade's
ends (1-2 channels in or out) are memory-bound, and there oneDNN is 2-4x slower than the kernels on
every CPU measured: the 32->1 forward and the first conv's input gradient run on the tap-conv
kernel (`native.tapconv_native`), their weight gradients on the weight-gradient kernel (figures in
benchmarks/README.md). `native_weight_grad(model)` switches the eligible convs of a model to this
for the duration of a `with` block; results equal autograd's up to float rounding (another
summation order).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mrdistill.accel.native import (conv3x3_weight_grad_native, convgrad_kernel, kernel_problem,
                                    tapconv_native)
from mrdistill.accel.parallel import run_chunks, thread_parts
from mrdistill.errors import MrdistillNote

NARROW = 8  # fewer channels than this on one side: a memory-bound conv at a cascade's end


def kernel_preferred() -> bool:
    """True where the compiled weight gradient of a wide conv beats oneDNN's: where oneDNN runs AVX2
    (or older) code, i.e. on a CPU without AVX-512 or with oneDNN capped below it
    (ONEDNN_MAX_CPU_ISA). Measured (benchmarks/README.md, `conv_grad.py`: one 32->32 conv, 240^2,
    batch 4, 2 threads): on an AVX2-only AMD EPYC the kernel 82-114 GFLOP/s vs oneDNN channels_last
    22-54; on an AVX-512 AMD EPYC (Zen 5) oneDNN 237 vs the kernel 135, and with oneDNN capped at
    AVX2 there 83 vs 157."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    capped = cap.startswith(("SSE", "AVX")) and not cap.startswith(("AVX512", "AVX10"))
    return capped or torch.backends.cpu.get_cpu_capability() == "AVX2"


def kernel_weight_grad(x: Tensor, dy: Tensor) -> tuple[Tensor, Tensor] | None:
    """(gw float32 (Cout, Cin, 3, 3), gb float32 (Cout,)) of y = conv3x3(x) from the kernel, or None.

    x: float32 (n, Cin, H, W), dy: float32 (n, Cout, H, W), both dense channels-last. The kernel
    needs a multiple of 8 channels on its input side; with few input channels (the first conv of a
    cascade) it runs with the roles of x and dy swapped: sum_p dy[p, o] x[p + t, c] is
    sum_q x[q, c] dy[q - t, o], the mirrored tap of the swapped product."""
    if x.shape[1] % 8 == 0:  # (with dy of any width)
        return conv3x3_weight_grad_native(x, dy)
    swapped = conv3x3_weight_grad_native(dy, x)  # (Cin, Cout, 3, 3), taps mirrored
    if swapped is None:
        return None
    gw = swapped[0].flip(2, 3).transpose(0, 1).contiguous(memory_format=torch.channels_last)
    return gw, dy.sum((0, 2, 3))


def narrow_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor | None:
    """conv2d(x, weight, bias, padding=1) to few output channels by the tap-conv kernel, the batch
    split over the torch threads (the kernel is single-threaded); None where it cannot run.

    x: float32 (n, C, H, W) dense channels-last, C a multiple of 8; weight: (Cout, C, 3, 3).
    Returns float32 (n, Cout, H, W) contiguous."""
    taps = weight.detach().permute(0, 2, 3, 1).contiguous()  # (Cout, 3, 3, C), as the kernel reads
    b = torch.zeros(weight.shape[0]) if bias is None else bias.detach().contiguous()
    outs = run_chunks(lambda part: tapconv_native(x[part], taps, b), thread_parts(x.shape[0]))
    if any(out is None for out in outs):
        return None
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def weight_grad_on_kernel(x: Tensor, dy: Tensor) -> bool:
    """Whether the weight gradient of this conv goes to the kernel: always for a narrow conv, for a
    wide one where oneDNN runs AVX2 code."""
    return min(x.shape[1], dy.shape[1]) < NARROW or kernel_preferred()


class _Conv3x3NativeGrad(torch.autograd.Function):
    """y = conv2d(x, weight, bias, padding=1) in channels_last. Forward: the tap-conv kernel for a
    conv to few channels, else oneDNN. Backward: the input gradient as the convolution with the
    flipped, transposed weight where the conv has few input channels (tap-conv kernel, else oneDNN;
    oneDNN's own backward-data is slower there), else by oneDNN; the weight and bias gradients as
    `weight_grad_on_kernel` says. oneDNN for whatever a kernel cannot take."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = narrow_conv(x, weight, bias) if weight.shape[0] < NARROW and x.shape[1] % 8 == 0 else None
        if y is None:
            y = F.conv2d(x, weight, bias, padding=1)
        # channels_last (a no-op after `channels_last_view` or for one channel): later convs expect it.
        return y.contiguous(memory_format=torch.channels_last)

    @staticmethod
    @once_differentiable  # the kernel's gradients have no graph: refuse double backward loudly
    def backward(ctx, dy: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last)
        need_x, need_w, need_b = ctx.needs_input_grad
        need_b = need_b and ctx.has_bias
        gx = gw = gb = None
        if (need_w or need_b) and weight_grad_on_kernel(x, dy):
            gw, gb = kernel_weight_grad(x, dy) or (None, None)
        if need_x and x.shape[1] < NARROW:
            flipped = weight.flip(2, 3).transpose(0, 1)  # (Cin, Cout, 3, 3)
            gx = narrow_conv(dy, flipped, None) if dy.shape[1] % 8 == 0 else None
            if gx is None:
                gx = F.conv2d(dy, flipped.contiguous(memory_format=torch.channels_last), padding=1)
        mask = [need_x and gx is None, need_w and gw is None, need_b and gb is None]
        if any(mask):  # oneDNN for whatever is still missing
            rest = torch.ops.aten.convolution_backward(
                dy, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [1, 1], [1, 1],
                False, [0, 0], 1, mask)
            gx, gw, gb = (mine if mine is not None else theirs for mine, theirs in zip((gx, gw, gb), rest))
        return gx if need_x else None, gw if need_w else None, gb if need_b else None


def channels_last_view(x: Tensor) -> Tensor:
    """x float32 (n, C, H, W) as dense channels-last. A 1-channel tensor is both layouts at once and
    oneDNN then answers in NCHW; its channel stride set to 1 makes oneDNN answer in channels_last
    (no copy: with one channel that stride is never used to step)."""
    if x.shape[1] == 1 and x.is_contiguous():
        return x.as_strided(x.shape, (x.stride(0), 1, x.stride(2), x.stride(3)))
    return x.contiguous(memory_format=torch.channels_last)


class NativeGradConv2d(nn.Conv2d):
    """An nn.Conv2d (same parameters, same state_dict) whose training forward uses
    `_Conv3x3NativeGrad` when the input allows it: float32 on the CPU, dense channels-last,
    gradients wanted, no autocast. Anything else runs nn.Conv2d's own forward."""

    def forward(self, x: Tensor) -> Tensor:
        if (torch.is_grad_enabled() and self.weight.requires_grad and x.dtype == torch.float32
                and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")):
            return _Conv3x3NativeGrad.apply(channels_last_view(x), self.weight, self.bias)
        return super().forward(x)


def eligible(conv: nn.Module) -> bool:
    """A plain nn.Conv2d that the kernel can differentiate: 3x3, stride 1, zero padding 1, no
    dilation, one group, input or output channels a multiple of 8."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and (conv.in_channels % 8 == 0 or conv.out_channels % 8 == 0))


@contextmanager
def native_weight_grad(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, the eligible convs of `model` (on the CPU) are `NativeGradConv2d`; yields
    how many. Nothing changes where `enabled` is false or the kernel is unavailable (no AVX2, no C
    compiler, MRDISTILL_NATIVE=0). The convs get their class back on exit, so a saved or exported
    model never depends on this module."""
    convs = []
    if enabled:
        convs = [m for m in model.modules() if eligible(m) and m.weight.device.type == "cpu"]
        if convs and convgrad_kernel() is None:
            # Asked for (optim.channels_last) but not available here: say so, once per reason.
            warnings.warn(MrdistillNote(f"optim.channels_last: the compiled conv-gradient kernel is "
                                        f"off ({kernel_problem('convgrad')}); training goes on with "
                                        f"torch's convolutions (same results, slower)"), stacklevel=3)
            convs = []
    for m in convs:
        m.__class__ = NativeGradConv2d  # same attributes and parameters: only forward changes
    try:
        yield len(convs)
    finally:
        for m in convs:
            m.__class__ = nn.Conv2d
