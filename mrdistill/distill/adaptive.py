"""Variance-weighted adaptive distillation (Wu & Li 2024) from a teacher ensemble, without targets.

Student loss per batch: MSE(w |x_S|, w |x_T|) with x_T the mean of the teachers and, per sample,
`w = clip(avg / V, lo, hi)` (default [1/3, 3]), V = sum over pixels of the teachers' per-pixel
variance of magnitudes (the ensemble's "variance" feature) and avg the data-set mean of V: samples
on which the teachers agree count more. `weighting="plain"` is ordinary unweighted distillation.

avg is either fixed beforehand (`dataset_mean_variance`, one pass over the training set) or a running
estimate (exponential moving average over training batches). A `distill.teacher_cache.TeacherCache`
shared by the pass and the objective runs a costly ensemble once per training slice.

`AdaptiveDistillation` has the KD-loss signature `loss(student, teacher, sample)` and plugs into
`DistillObjective`, but it is not in the KD registry: it needs an ensemble teacher (its "variance"
feature), so it is reached through the `distill.adaptive` config section instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mrdistill.data.sample import Sample, collate_samples
from mrdistill.distill.registry import get_feature
from mrdistill.distill.teacher_cache import TeacherCache
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.base import ReconOutput, run_model
from mrdistill.physics.fft import magnitude

WEIGHTINGS = ("adaptive", "plain")
AVERAGES = ("running", "fixed")


def variance_sum(variance: Tensor) -> Tensor:
    """Per-pixel variance float (N, 1, H, W) -> V float (N,): its sum over the image."""
    return variance.flatten(1).sum(dim=1)


def adaptive_weights(v: Tensor, average: Tensor | float, clip: Sequence[float] = (1 / 3, 3.0)) -> Tensor:
    """w = clip(average / V, lo, hi) per sample: V float (N,) -> float (N,); V = 0 gives hi."""
    lo, hi = float(clip[0]), float(clip[1])
    ratio = torch.as_tensor(average, dtype=v.dtype, device=v.device) / v.clamp_min(1e-30)
    return ratio.clamp(lo, hi)


def weighted_mse(student: Tensor, teacher: Tensor, w: Tensor) -> Tensor:
    """MSE(w * student, w * teacher), w float (N,) broadcast over (N, 1, H, W) -> scalar."""
    w = w.reshape(-1, *([1] * (student.dim() - 1)))
    return (w * student - w * teacher).square().mean()


def check_clip(clip: Sequence[float]) -> tuple[float, float]:
    if len(clip) != 2 or not 0 < float(clip[0]) <= float(clip[1]):
        raise MrdistillError(f"adaptive clip must be [lo, hi] with 0 < lo <= hi, got {list(clip)}")
    return float(clip[0]), float(clip[1])


class AdaptiveDistillation(nn.Module):
    """`weighted_mse(|x_S|, |x_T|, w)`; the teacher must be an ensemble (feature "variance") unless
    weighting is "plain". average: "running" (EMA with `momentum`) or "fixed" (see `set_average`)."""

    def __init__(self, weighting: str = "adaptive", clip: Sequence[float] = (1 / 3, 3.0),
                 average: str = "running", momentum: float = 0.99) -> None:
        super().__init__()
        check_choice("KD weighting", weighting, WEIGHTINGS)
        check_choice("variance average", average, AVERAGES)
        if not 0 <= momentum < 1:
            raise MrdistillError(f"momentum must lie in [0, 1), got {momentum}")
        self.weighting, self.clip = weighting, check_clip(clip)
        self.average, self.momentum = average, momentum
        # Plain distillation needs only the images; the variance is a teacher feature.
        self.needs_features = weighting == "adaptive"
        self.register_buffer("avg_variance", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def set_average(self, value: float) -> None:
        """Fix avg (e.g. from `dataset_mean_variance`); the running update is switched off."""
        if not value > 0:
            raise MrdistillError(f"the mean teacher variance must be > 0, got {value} (identical teachers?)")
        self.avg_variance.fill_(float(value))
        self.seen.fill_(True)
        self.average = "fixed"

    def _average(self, v: Tensor) -> Tensor:
        if self.average == "running":
            # Only optimisation steps move the estimate (not checks or evaluation under no_grad).
            if self.training and torch.is_grad_enabled():
                batch_mean = v.detach().mean()
                new = batch_mean if not bool(self.seen) else \
                    self.momentum * self.avg_variance + (1 - self.momentum) * batch_mean
                self.avg_variance.copy_(new)
                self.seen.fill_(True)
            elif not bool(self.seen):
                # Before the first step (the setup check that runs every term once, or an early
                # evaluation) the batch's own mean stands in, without becoming the estimate.
                return v.detach().mean()
        if not bool(self.seen):
            raise MrdistillError("adaptive KD has no variance average yet: call set_average or train")
        return self.avg_variance

    def weights(self, teacher: ReconOutput) -> Tensor:
        """Per-sample weights float (N,) for a batch of teacher outputs."""
        variance = get_feature(teacher.features, "variance", "teacher (adaptive weighting needs an "
                               "ensemble of at least 2 teachers)")
        v = variance_sum(variance)
        return adaptive_weights(v, self._average(v), self.clip)

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        s, t = magnitude(student.image), magnitude(teacher.image).detach()
        w = self.weights(teacher) if self.weighting == "adaptive" else s.new_ones(s.shape[0])
        return weighted_mse(s, t, w)


@torch.no_grad()
def dataset_mean_variance(teacher: nn.Module, dataset: Dataset, device: str | torch.device = "cpu",
                          batch_size: int = 8, progress: bool = False,
                          cache: TeacherCache | None = None) -> float:
    """avg: the mean over `dataset` of V (summed per-pixel teacher variance), in one pass; with
    `cache` (the objective's) the teacher's outputs are kept for training."""
    teacher.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_samples)

    def run(part: Sample) -> ReconOutput:
        return run_model(teacher, part, return_features=True)

    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for batch in tqdm(loader, desc="teacher variance", disable=not progress, leave=False):
        batch = batch.to(device)
        out = run(batch) if cache is None else cache.outputs(batch, (True, ()), run)
        v = variance_sum(get_feature(out.features, "variance", "teacher"))
        total += v.sum()  # summed on the device: one read at the end, none per batch
        count += v.shape[0]
    return float(total) / max(count, 1)
