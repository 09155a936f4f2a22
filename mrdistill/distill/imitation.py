"""Imitation (output) distillation: the student's image should match the teacher's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.distill.registry import register_kd
from mrdistill.errors import check_choice
from mrdistill.models.base import ReconOutput


def imitation_loss(student: Tensor, teacher: Tensor, distance: str = "l1") -> Tensor:
    """Mean L1 or L2 distance between two images float (N, C, H, W) -> scalar."""
    if distance == "l1":
        return F.l1_loss(student, teacher)
    return F.mse_loss(student, teacher)


@register_kd("imitation")
class Imitation(nn.Module):
    """`distance(x_S, x_T)` on the reconstructed images.

    compat="kdmri" reproduces KD-MRI's released code, which divides the (already mean) L1 by the
    number of elements, making the term almost zero; use it only to reproduce their numbers.

    Paper: Murugesan et al., "KD-MRI: A knowledge distillation framework for image reconstruction
    and image restoration in MRI workflow", MIDL 2020 (the imitation loss).

    Formula: L = d(x_S, x_T), d = L1 (mean |x_S - x_T|) or L2 (mean (x_S - x_T)^2) on the
        network-layout images.

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: imitation, weight: 0.5, kwargs: {distance: l1}}
    ```
    """

    needs_features = False

    def __init__(self, distance: str = "l1", compat: str | None = None) -> None:
        super().__init__()
        check_choice("imitation distance", distance, ("l1", "l2"))
        if compat is not None:
            check_choice("imitation compat mode", compat, ("kdmri",))
        self.distance = distance
        self.compat = compat

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        loss = imitation_loss(student.image, teacher.image.detach(), self.distance)
        if self.compat == "kdmri":
            loss = loss / teacher.image.numel()
        return loss
