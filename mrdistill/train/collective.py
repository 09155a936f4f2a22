"""Decisions the ranks of a torchrun job take together (one process: its own), so that no rank
waits in a collective another one skipped: whether a step is skipped, whether a checkpoint is due."""

from __future__ import annotations

import time

import torch
from torch import nn

from mrdistill.train import distributed
from mrdistill.train.distributed import DistContext


def grad_norm(params: list[nn.Parameter], clip: float | None) -> torch.Tensor:
    """The gradients' total 2-norm (clipped to `clip` when given; the norm before clipping)."""
    grads = [p.grad for p in params if p.grad is not None]
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def loss_is_bad(loss: torch.Tensor, ctx: DistContext, device: torch.device) -> bool:
    """True when the loss is non-finite on any rank (every rank then skips the step)."""
    return distributed.any_rank(not bool(torch.isfinite(loss)), ctx, device)


def gradient_is_bad(params: list[nn.Parameter], clip: float | None, ctx: DistContext,
                    device: torch.device) -> bool:
    """True when the (all-reduced) gradients are non-finite on any rank; clips them to `clip`."""
    return distributed.any_rank(not bool(torch.isfinite(grad_norm(params, clip))), ctx, device)


def checkpoint_due(step: int, every: int | None, minutes: float, last_save: float, ctx: DistContext,
                   device: torch.device) -> bool:
    """A step checkpoint is due: every `every` steps, or `minutes` after `last_save`
    (`time.monotonic()`). Saving is collective (the ranks' loss sums are gathered), so rank 0's
    clock decides."""
    if every and step % every == 0:
        return True
    if not minutes:
        return False
    late = time.monotonic() - last_save >= 60.0 * minutes
    return bool(distributed.from_main(float(late), ctx, device))
