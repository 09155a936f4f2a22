"""One objective for every stage: a task term plus weighted KD terms.

`DistillObjective(teacher=None, terms={})` is plain supervised training; with a teacher and terms it
is distillation. It returns `{"loss": ..., "task": ..., "kd/<name>": ...}` so logging needs no special
cases. The teacher is frozen: `eval()`, `requires_grad_(False)`, run under `torch.no_grad()`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput
from mrdistill.physics.fft import magnitude


def task_loss(output: ReconOutput, target: Tensor) -> Tensor:
    """L1 between the scored image (magnitude) and the target float (N, 1, H, W) -> scalar."""
    return F.l1_loss(magnitude(output.image), target)


class DistillObjective(nn.Module):
    """task_weight * L1(|x_S|, target) + sum_k weight_k * kd_k(student, teacher, sample).

    `terms` maps a name to (KD loss module, weight). The KD modules are submodules (their adapters
    are trained with the student); the teacher is kept out of `parameters()`.
    """

    def __init__(self, teacher: nn.Module | None = None,
                 terms: dict[str, tuple[nn.Module, float]] | None = None,
                 task_weight: float = 1.0) -> None:
        super().__init__()
        terms = terms or {}
        if terms and teacher is None:
            raise MrdistillError("KD terms need a teacher checkpoint")
        self.kd = nn.ModuleDict({name: module for name, (module, _) in terms.items()})
        self.weights = {name: float(w) for name, (_, w) in terms.items()}
        self.task_weight = float(task_weight)
        self._teacher = [teacher] if teacher is not None else []  # a list keeps it unregistered
        if teacher is not None:
            teacher.eval().requires_grad_(False)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    @property
    def needs_features(self) -> bool:
        return any(getattr(m, "needs_features", False) for m in self.kd.values())

    def forward(self, model: nn.Module, sample: Sample) -> dict[str, Tensor]:
        feats = self.needs_features
        student = model(sample.kspace, sample.mask, return_features=feats)
        out: dict[str, Tensor] = {}
        total = student.image.new_zeros(())
        # A batch of undersampled-only slices (target None) learns from the teacher alone.
        if self.task_weight and (sample.target is not None or not self.kd):
            if sample.target is None:
                raise MrdistillError("task loss needs targets, but the data set has none "
                                     "(self-supervised data): set task_weight to 0")
            out["task"] = task_loss(student, sample.target)
            total = total + self.task_weight * out["task"]
        if self.kd:
            teacher = self.teacher
            assert teacher is not None
            with torch.no_grad():
                teacher_out = teacher(sample.kspace, sample.mask, return_features=feats)
            for name, module in self.kd.items():
                out[f"kd/{name}"] = module(student, teacher_out, sample)
                total = total + self.weights[name] * out[f"kd/{name}"]
        out["loss"] = total
        return out
