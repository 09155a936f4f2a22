"""The task loss: how far the scored image is from the target (`optim.loss`).

One function for `train`, every distillation stage and teacher correction's student term. The
scored image is the magnitude of the model's output, centre-cropped to the target (fastMRI scores
320x320 crops of reconstructions made on the full k-space grid). Losses, each a scalar:

    l1:   mean |x - y|
    mse:  mean (x - y)^2
    ssim: 1 - mean local SSIM (7x7 uniform window, K1 0.01, K2 0.03, sample covariance, data range
          = each sample's volume max): what fastMRI's `SSIMLoss` computes (tests check it against
          fastmri 0.3.0's losses.py), which fastMRI trains its VarNet with.

A weighted sum `{name: weight}` adds them; a plain name is weight 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch.nn.functional as F
from torch import Tensor

from mrdistill.config.run import TASK_LOSSES
from mrdistill.data.crop import crop_like
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.eval.metrics import ssim_map
from mrdistill.models.base import ReconOutput
from mrdistill.physics.fft import magnitude

TaskLossSpec = str | Mapping[str, float]


def ssim_loss(pred: Tensor, target: Tensor, max_value: Tensor) -> Tensor:
    """1 - mean SSIM of pred, target float (N, 1, H, W) with data range max_value (N,) -> scalar."""
    return 1 - ssim_map(pred, target, max_value.to(pred.dtype).reshape(-1, 1, 1, 1)).mean()


LOSSES: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "l1": lambda pred, target, _: F.l1_loss(pred, target),
    "mse": lambda pred, target, _: F.mse_loss(pred, target),
    "ssim": ssim_loss,
}


def loss_weights(spec: TaskLossSpec) -> dict[str, float]:
    """"ssim" -> {"ssim": 1.0}; a mapping is checked and kept (zero weights dropped)."""
    if isinstance(spec, str):
        check_choice("optim.loss", spec, TASK_LOSSES)
        return {spec: 1.0}
    for name in spec:
        check_choice("optim.loss", name, TASK_LOSSES)
    weights = {name: float(w) for name, w in spec.items() if w}
    if not weights or min(weights.values()) < 0:
        raise MrdistillError(f"optim.loss: weights must be >= 0 with one > 0, got {dict(spec)}")
    return weights


def task_loss(output: ReconOutput, target: Tensor, max_value: Tensor | None = None,
              loss: TaskLossSpec = "l1") -> Tensor:
    """The task loss of `output` against target float (N, 1, h, w) -> scalar; max_value float
    (N,) (the data range of "ssim": each sample's volume max) is needed by "ssim" only."""
    pred = crop_like(magnitude(output.image), target)
    total = None
    for name, weight in loss_weights(loss).items():
        if name == "ssim" and max_value is None:
            raise MrdistillError("optim.loss ssim needs the samples' max values (data range)")
        term = weight * LOSSES[name](pred, target, max_value)
        total = term if total is None else total + term
    assert total is not None
    return total
