"""Mixed precision for training (`optim.precision`): autocast for the forward pass and the loss,
a gradient scaler for float16.

The networks' convolutions run in the low precision; FFTs and data consistency do not
(`physics.consistency`, `physics.column_dc` and `physics.fft` switch autocast off locally and cast
their inputs up to float32/complex64), so sampled k-space is still reproduced in float32.
Validation and test reconstruction always run in float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor

from mrdistill.config.run import PRECISIONS
from mrdistill.errors import MrdistillError, check_choice
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: str | torch.device) -> None:
    """Refuse an unknown precision, or float16 off CUDA (it needs a gradient scaler and fast half
    kernels; CPUs have neither), with one line naming `optim.precision`."""
    check_choice("optim.precision", precision, PRECISIONS)
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise MrdistillError(f"optim.precision: fp16 needs a CUDA device, got device "
                             f"{str(device)!r}; use bf16 or fp32 on this device")


class Precision:
    """The precision policy of one `fit`: `autocast()` around forward + loss, then `backward()`
    and `step()` (clipping and the optimizer step), scaled for float16."""

    def __init__(self, precision: str, device: str | torch.device) -> None:
        check_precision(precision, device)
        self.precision = precision
        self.device_type = torch.device(device).type
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def autocast(self) -> AbstractContextManager:
        """The region in which the model and the loss run (nothing changes for fp32)."""
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=DTYPES[self.precision])

    def backward(self, loss: Tensor) -> None:
        """loss.backward(), the loss scaled for float16."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, opt: torch.optim.Optimizer, params: list[Tensor], grad_clip: float | None) -> None:
        """Optional gradient-norm clipping, then opt.step(); with float16 the gradients are
        unscaled first and the step is skipped (and the scale lowered) when they overflowed."""
        if self.scaler is not None and grad_clip:
            self.scaler.unscale_(opt)
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if self.scaler is None:
            opt.step()
            return
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (empty without one), for resumable checkpoints."""
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
