"""A test-only plugin model (`plugins: [tests.train.nan_plugin]`): a DC-CNN whose training output
turns NaN on chosen ranks at chosen steps, so that one rank of a real torchrun job sees a
non-finite loss while the others do not."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from mrdistill.models import register_model
from mrdistill.models.base import ReconOutput
from mrdistill.models.dccnn import DCCNN


@register_model("nan_dccnn")
class NaNDCCNN(DCCNN):
    """DCCNN(cascades, convs, channels) whose output is NaN at the training forward passes
    `nan_at` (0-based, counted per process) on the ranks `nan_ranks` (0 without torchrun)."""

    def __init__(self, cascades: int = 1, convs: int = 3, channels: int = 8,
                 nan_ranks: list | None = None, nan_at: list | None = None) -> None:
        super().__init__(cascades=cascades, convs=convs, channels=channels)
        self.nan_ranks, self.nan_at, self.calls = set(nan_ranks or []), set(nan_at or []), 0

    def forward(self, kspace, mask, *, return_features: bool = False) -> ReconOutput:
        out = super().forward(kspace, mask, return_features=return_features)
        if self.training and torch.is_grad_enabled():
            rank = dist.get_rank() if dist.is_initialized() else 0
            if rank in self.nan_ranks and self.calls in self.nan_at:
                out = out._replace(image=out.image * math.nan)
            self.calls += 1
        return out
