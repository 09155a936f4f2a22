"""A test-only plugin model (`plugins: [tests.study.failing_plugin]`): a DC-CNN that raises in
every training step (a batch of more than one slice with gradients), but builds, counts its FLOPs
and runs the study's one-sample dry check like any model, so only its cells fail."""

from __future__ import annotations

import torch

from mrdistill.models import register_model
from mrdistill.models.base import ReconOutput
from mrdistill.models.dccnn import DCCNN


@register_model("failing_dccnn")
class FailingDCCNN(DCCNN):
    def forward(self, kspace, mask, *, return_features: bool = False) -> ReconOutput:
        if self.training and torch.is_grad_enabled() and kspace.shape[0] > 1:
            raise RuntimeError("failing_dccnn: this test model fails in every training step")
        return super().forward(kspace, mask, return_features=return_features)
