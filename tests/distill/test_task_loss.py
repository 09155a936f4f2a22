"""distill/task_loss.py: l1, mse, ssim (as fastMRI's SSIMLoss computes it) and weighted sums."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fastmri.losses import SSIMLoss

from mrdistill.config.run import TASK_LOSSES
from mrdistill.distill.task_loss import LOSSES, loss_weights, ssim_loss, task_loss
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput


def _pair(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = F.avg_pool2d(torch.rand(3, 1, 40, 48, generator=g, dtype=torch.float64), 5, 1, 2) * 3
    pred = target + 0.1 * torch.randn(target.shape, generator=g, dtype=torch.float64)
    max_value = target.amax(dim=(1, 2, 3)) * torch.tensor([1.0, 1.3, 0.8], dtype=torch.float64)
    return pred.to(dtype), target.to(dtype), max_value.to(dtype)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_ssim_loss_is_fastmris_in_value_and_gradient(dtype, tol):
    pred, target, max_value = _pair(dtype)
    ours_in, theirs_in = pred.clone().requires_grad_(True), pred.clone().requires_grad_(True)
    ours = ssim_loss(ours_in, target, max_value)
    reference = SSIMLoss().to(dtype)
    # fastMRI's window buffer is made in float32 (1/49 rounded); in float64 it is made exactly here,
    # so that the comparison checks the formula to float64 precision
    reference.w = torch.ones(1, 1, 7, 7, dtype=dtype) / 49
    theirs = reference(theirs_in, target, max_value)
    assert abs(ours.item() - theirs.item()) <= tol and 0.01 < theirs.item() < 1
    ours.backward()
    theirs.backward()
    assert torch.allclose(ours_in.grad, theirs_in.grad, rtol=1e-4, atol=tol)


def test_losses_and_weighted_sums_on_the_cropped_magnitude():
    pred, target, max_value = _pair(torch.float32, seed=1)
    wide = F.pad(pred, (4, 4, 0, 0), value=9.0)  # a wider output: cropped to the target first
    out = ReconOutput(torch.cat([wide, torch.zeros_like(wide)], dim=1), {})  # 2 channels: |.| = pred
    assert tuple(LOSSES) == TASK_LOSSES
    l1 = task_loss(out, target, max_value)  # the default
    assert torch.allclose(l1, F.l1_loss(pred, target))
    assert torch.allclose(task_loss(out, target, max_value, "mse"), F.mse_loss(pred, target))
    ssim = task_loss(out, target, max_value, "ssim")
    assert torch.allclose(ssim, SSIMLoss()(pred, target, max_value), atol=1e-6)
    both = task_loss(out, target, max_value, {"ssim": 0.84, "l1": 0.16, "mse": 0})
    assert torch.allclose(both, 0.84 * ssim + 0.16 * l1)


def test_bad_specs_are_refused():
    assert loss_weights("ssim") == {"ssim": 1.0} and loss_weights({"l1": 0, "mse": 2}) == {"mse": 2.0}
    for bad in ("huber", {"l1": 0}, {"l2": 1.0}, {"l1": -1.0}):
        with pytest.raises(MrdistillError, match="optim.loss"):
            loss_weights(bad)
    pred, target, _ = _pair(torch.float32)
    with pytest.raises(MrdistillError, match="max values"):
        task_loss(ReconOutput(pred, {}), target, None, "ssim")
