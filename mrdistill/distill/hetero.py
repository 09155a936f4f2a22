"""Feature distillation across architectures (transformer teacher <-> CNN student).

A `{student_key: teacher_key}` pair may join features of any widths and resolutions: token maps
(N, L, C) are reshaped to square images (N, C, sqrt L, sqrt L), a 1x1 conv adapter on the student
side maps C_S -> C_T channels, and the adapted student map is average-pooled or bilinearly
resized to the teacher's spatial size (the two sizes must differ by integer factors per axis).
Both maps are then standardised per sample (zero mean, unit variance over C, H, W), so the very
different activation scales of a transformer and a CNN do not matter, and compared by MSE or L1.

Adapters start as the identity when the channel counts agree (so identical features cost exactly
zero), else with a default init drawn from `seed` in a forked RNG (global RNG state is untouched).
They are sized from one batch by `setup` before training (`DistillObjective.setup`, which
`train.loop.fit` calls before it builds the optimizer), so the optimizer sees them; they are
student-side training modules, dropped at export.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.distill.hint import make_regressor
from mrdistill.distill.registry import get_feature, register_kd
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.base import ReconOutput


def as_image(feature: Tensor, where: str) -> Tensor:
    """float (N, C, H, W) as is, or token map (N, L, C) with L a square -> (N, C, sqrt L, sqrt L)."""
    if feature.dim() == 4:
        return feature
    if feature.dim() == 3:
        n, length, c = feature.shape
        side = math.isqrt(length)
        if side * side != length:
            raise MrdistillError(f"{where}: token map of {length} tokens is not square; give the "
                                 f"feature as an image (N, C, H, W)")
        return feature.transpose(1, 2).reshape(n, c, side, side)
    raise MrdistillError(f"{where}: expected a feature (N, C, H, W) or tokens (N, L, C), got "
                         f"shape {tuple(feature.shape)}")


def check_alignable(s_shape: tuple[int, ...], t_shape: tuple[int, ...], where: str) -> None:
    """`MrdistillError` unless each spatial axis of the two maps differs by an integer factor."""
    for a, b in zip(s_shape[-2:], t_shape[-2:]):
        if max(a, b) % min(a, b):
            raise MrdistillError(f"{where}: student feature {tuple(s_shape[1:])} cannot be aligned to "
                                 f"teacher feature {tuple(t_shape[1:])}: spatial sizes must differ "
                                 f"by integer factors")


def resize_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """float (N, C, h, w) -> (N, C, *size): area pooling where it shrinks, bilinear where it grows."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def standardise(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Per sample: zero mean, unit variance over all non-batch axes."""
    flat = x.flatten(1)
    mean = flat.mean(dim=1).view(-1, *([1] * (x.dim() - 1)))
    std = flat.std(dim=1, unbiased=False).view(-1, *([1] * (x.dim() - 1)))
    return (x - mean) / (std + eps)


def feature_distance(student: Tensor, teacher: Tensor, distance: str, normalize: bool) -> Tensor:
    """Mean squared ("l2") or absolute ("l1") difference of two equally shaped maps -> scalar."""
    if normalize:
        student, teacher = standardise(student), standardise(teacher)
    diff = student - teacher
    return diff.square().mean() if distance == "l2" else diff.abs().mean()


@register_kd("hetero_feature")
class HeteroFeatureKD(nn.Module):
    """Mean over pairs of distance(standardise(resize(adapter(F_S))), standardise(F_T)).

    pairs: {student_key: teacher_key} (required). The teacher is detached here; `feedback` gives the
    same distance with the student side detached, for a teacher that learns from its student.

    Paper: Qiu, Zhang & Li, "A good teacher learns while teaching" (CHPNet), Knowledge-Based
    Systems 2025 (transformer teacher, CNN student).

    Formula: L = mean over pairs of d(standardise(resize(a(F_S))), standardise(F_T)), a a 1x1 conv
        adapter, d = L2 by default.

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: hetero_feature, weight: 0.01, kwargs: {pairs: {iter2.dec2: body}}}
    ```
    """

    needs_features = True

    def __init__(self, pairs: dict[str, str] | None = None, distance: str = "l2",
                 normalize: bool = True, seed: int = 0) -> None:
        super().__init__()
        if not pairs:
            raise MrdistillError("hetero_feature needs pairs {student_key: teacher_key}, e.g. "
                                 "{'iter2.dec2': 'body'}")
        check_choice("hetero_feature distance", distance, ("l1", "l2"))
        self.pairs = dict(pairs)
        self.distance, self.normalize, self.seed = distance, normalize, seed
        self.adapters = nn.ModuleList()

    @property
    def bound(self) -> bool:
        return len(self.adapters) == len(self.pairs)

    def _maps(self, student: ReconOutput, teacher: ReconOutput, s_key: str,
              t_key: str) -> tuple[Tensor, Tensor]:
        where = f"hetero_feature pair {s_key}->{t_key}"
        fs = as_image(get_feature(student.features, s_key, "student"), where)
        ft = as_image(get_feature(teacher.features, t_key, "teacher"), where)
        check_alignable(tuple(fs.shape), tuple(ft.shape), where)
        return fs, ft

    def setup(self, student: ReconOutput, teacher: ReconOutput, sample: Sample | None = None) -> None:
        """Create one 1x1 adapter C_S -> C_T per pair from features of one batch (idempotent)."""
        if self.bound:
            return
        for s_key, t_key in self.pairs.items():
            fs, ft = self._maps(student, teacher, s_key, t_key)
            adapter = make_regressor(fs.shape[1], ft.shape[1], self.seed + len(self.adapters))
            self.adapters.append(adapter.to(fs.device))

    def _adapted(self, k: int, fs: Tensor, ft: Tensor) -> Tensor:
        if not self.bound:
            raise RuntimeError("hetero_feature adapters are not built: call setup() first "
                               "(DistillObjective.setup does, and `fit` calls it)")
        adapter = self.adapters[k]
        if fs.shape[1] != adapter.in_channels or ft.shape[1] != adapter.out_channels:
            raise MrdistillError(f"hetero_feature: feature widths changed since the adapters were "
                                 f"built ({adapter.in_channels}->{adapter.out_channels})")
        return resize_to(adapter(fs), tuple(ft.shape[-2:]))

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        losses = []
        for k, (s_key, t_key) in enumerate(self.pairs.items()):
            fs, ft = self._maps(student, teacher, s_key, t_key)
            losses.append(feature_distance(self._adapted(k, fs, ft), ft.detach(), self.distance,
                                           self.normalize))
        return torch.stack(losses).mean()

    def feedback(self, student: ReconOutput, teacher: ReconOutput) -> Tensor:
        """The same distance with the (adapted) student side fixed: its gradient moves the teacher
        toward representations the student can reach."""
        losses = []
        for k, (s_key, t_key) in enumerate(self.pairs.items()):
            fs, ft = self._maps(student, teacher, s_key, t_key)
            with torch.no_grad():
                target = self._adapted(k, fs, ft)
            losses.append(feature_distance(target, ft, self.distance, self.normalize))
        return torch.stack(losses).mean()
