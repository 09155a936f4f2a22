"""`train.collective` in one process (the torchrun case: tests/train/test_distributed.py)."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from mrdistill.train.collective import checkpoint_due, gradient_is_bad, grad_norm, loss_is_bad
from mrdistill.train.distributed import DistContext

CPU, ONE = torch.device("cpu"), DistContext()


def _with_grads(*grads: list[float]) -> list[nn.Parameter]:
    params = [nn.Parameter(torch.zeros(len(g))) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    return params


def test_grad_norm_and_clipping() -> None:
    params = _with_grads([3.0], [4.0, 0.0])
    assert float(grad_norm(params, None)) == pytest.approx(5.0)
    assert float(grad_norm(params, 1.0)) == pytest.approx(5.0)  # the norm before clipping
    assert float(torch.cat([p.grad for p in params]).norm()) == pytest.approx(1.0, rel=1e-5)
    assert float(grad_norm([nn.Parameter(torch.zeros(2))], None)) == 0.0  # no gradients yet


def test_non_finite_loss_and_gradients_are_bad() -> None:
    assert loss_is_bad(torch.tensor(math.nan), ONE, CPU) and loss_is_bad(torch.tensor(math.inf), ONE, CPU)
    assert not loss_is_bad(torch.tensor(1.5), ONE, CPU)
    assert gradient_is_bad(_with_grads([1.0, math.inf]), None, ONE, CPU)
    assert not gradient_is_bad(_with_grads([1.0, 2.0]), 0.5, ONE, CPU)


def test_checkpoint_due_by_steps_or_minutes() -> None:
    now = time.monotonic()
    assert checkpoint_due(6, 3, 0.0, now, ONE, CPU) and not checkpoint_due(7, 3, 0.0, now, ONE, CPU)
    assert not checkpoint_due(7, None, 0.0, now - 1e6, ONE, CPU)  # minutes 0: off
    assert checkpoint_due(7, None, 1.0, now - 61.0, ONE, CPU)
    assert not checkpoint_due(7, None, 1.0, now, ONE, CPU)
