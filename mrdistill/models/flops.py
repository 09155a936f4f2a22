"""FLOP counting for reconstruction models.

FLOPs (`count_flops`): conv (and linear) multiply-adds x 2 of one eager forward, counted analytically
from the shapes seen by forward hooks, or optionally with `torch.utils.flop_counter.FlopCounterMode`
(same convention, same number for DC-CNN). For a conv that is 2 * Cin * Cout * kh * kw * Hout * Wout
per slice. Bias additions, activations, FFTs and the data-consistency (DC) blend are *not* counted
(FlopCounterMode has no formula for them either), so for DC-CNN the count is exactly
sum_convs 2 * Cin * Cout * 9 * H * W per slice (the FFT/DC work is < 0.5 % of it at 256 x 256).
It is the model's FLOP count, independent of how `optimise_for_inference` computes the same result.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mrdistill.errors import check_choice


def count_flops(model: nn.Module, kspace: Tensor, mask: Tensor, *, method: str = "analytic") -> int:
    """FLOPs of one eager forward of `model` on this batch (all slices together; divide by N per slice).

    kspace: complex64 (N, C, H, W); mask: broadcastable (N, 1, 1|H, W). A multiply-add is 2 FLOPs;
    bias, activation, FFT and DC work is not counted. method:
    - "analytic": forward hooks on the model's conv and linear modules add the formula of
      `_module_flops` from the actual shapes; instant, but blind to functional ops outside modules;
    - "flop_counter": `torch.utils.flop_counter.FlopCounterMode` (also sees functional convs and
      matmuls; its first use imports torch._dynamo, which takes seconds).
    Both give the same number for DC-CNN. Runs under `torch.no_grad()`; hooks are removed afterwards,
    the model's state and all RNG state are unchanged.
    """
    check_choice("FLOP counting method", method, ("analytic", "flop_counter"))
    with torch.no_grad():
        if method == "flop_counter":
            with FlopCounterMode(display=False) as counter:
                model(kspace, mask)
            return int(counter.get_total_flops())
        counts: list[int] = []

        def record(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            counts.append(_module_flops(module, args[0], out))

        hooks = [m.register_forward_hook(record) for m in model.modules()
                 if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
        try:
            model(kspace, mask)
        finally:
            for hook in hooks:
                hook.remove()
        return sum(counts)


def _module_flops(module: nn.Module, x: Tensor, out: Tensor) -> int:
    """2 x multiply-adds of one conv/linear call, FlopCounterMode's convention (bias not counted):
    conv 2 * Cin/groups * prod(kernel) * numel(out); transposed conv 2 * numel(in) * Cout/groups *
    prod(kernel); linear 2 * in_features * numel(out)."""
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * out.numel()
    kernel = math.prod(module.kernel_size)
    if module.transposed:  # every input pixel is scattered into Cout/groups x kernel outputs
        return 2 * x.numel() * (module.out_channels // module.groups) * kernel
    return 2 * (module.in_channels // module.groups) * kernel * out.numel()
