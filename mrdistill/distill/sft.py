"""Student-friendly teacher training (SFT-KD-Recon, Gayathri et al. 2023).

The teacher DC-CNN is trained together with *student branches*: the output of teacher cascade i
also runs through student cascades i+1..n, giving branch reconstructions x_Si next to the teacher's
x_T. The loss is

    teacher_weight * L1(x_T, y) + branch_weight * mean_i L1(x_Si, y)
                                + imitation_weight * mean_i L1(x_Si, x_T),

and x_T is *not* detached in the imitation term: that term is what makes the teacher's
representations easy for the student to follow. The teacher is the model `fit` trains; the student
whose cascades form the branches is a submodule of this objective, so the optimizer trains it and
the checkpoint's "extra" stores it. At inference only the teacher runs: the checkpoint's "model" is
an ordinary teacher checkpoint, usable by every KD method.

Branch i = 0 feeds the zero-filled image through all student cascades (`input_branch`, default on).
The paper's branches start at i = 1, so student cascade 1 is never trained; its figure says the SFT
student blocks serve as the initial weights of the student, and without branch 0 the first block of
that initialisation would stay random (as it does in the authors' code). `input_branch=False` gives
the paper's exact branch set. `student_state` extracts the student's weights from a checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.distill.task_loss import task_loss
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput
from mrdistill.models.dccnn import DCCNN
from mrdistill.physics.fft import ifft2c, image_to_network

STUDENT_PREFIX = "student."


def check_pair(teacher: nn.Module, student: nn.Module) -> None:
    """Teacher and student must be DC-CNNs with the same number of cascades and channels."""
    for role, m in (("teacher", teacher), ("student", student)):
        if not isinstance(m, DCCNN):
            raise MrdistillError(f"SFT needs DC-CNN teacher and student (cascades that can run "
                                 f"from a given image); the {role} is {type(m).__name__}")
    if len(teacher.cascades) != len(student.cascades):
        raise MrdistillError(f"SFT needs the same number of cascades in teacher and student; got "
                             f"{len(teacher.cascades)} and {len(student.cascades)}")
    if teacher.complex_input != student.complex_input:
        raise MrdistillError("SFT needs teacher and student with the same in_channels")


def sft_terms(teacher: ReconOutput, branches: list[ReconOutput],
              target: Tensor) -> dict[str, Tensor]:
    """The three SFT losses: {"task": L1(|x_T|, y), "sft/branch": mean_i L1(|x_Si|, y),
    "sft/imitation": mean_i L1(x_Si, x_T)}, images float (N, C, H, W), target (N, 1, H, W)."""
    return {
        "task": task_loss(teacher, target),
        "sft/branch": torch.stack([task_loss(b, target) for b in branches]).mean(),
        "sft/imitation": torch.stack([F.l1_loss(b.image, teacher.image) for b in branches]).mean(),
    }


class SFTObjective(nn.Module):
    """`objective(teacher, sample) -> {"loss", "task", "sft/branch", "sft/imitation"}` for `fit`."""

    def __init__(self, student: nn.Module, teacher_weight: float = 1.0, branch_weight: float = 1.0,
                 imitation_weight: float = 1.0, input_branch: bool = True) -> None:
        super().__init__()
        if min(teacher_weight, branch_weight, imitation_weight) < 0:
            raise MrdistillError("SFT weights must be >= 0, got "
                                 f"{teacher_weight}, {branch_weight}, {imitation_weight}")
        self.student = student  # a registered submodule: trained, checkpointed as "extra"
        self.weights = {"task": float(teacher_weight), "sft/branch": float(branch_weight),
                        "sft/imitation": float(imitation_weight)}
        self.first = 0 if input_branch else 1
        if self.first >= len(student.cascades):
            raise MrdistillError("SFT without the input branch needs at least 2 cascades")

    def forward(self, model: nn.Module, sample: Sample) -> dict[str, Tensor]:
        if sample.target is None:
            raise MrdistillError("SFT teacher training needs targets (supervised data)")
        check_pair(model, self.student)
        teacher = model(sample.kspace, sample.mask, return_features=True)
        zero_filled = image_to_network(ifft2c(sample.kspace), self.student.complex_input)
        starts = [zero_filled] + [teacher.features[f"cascade{i}.out"]
                                  for i in range(1, len(self.student.cascades))]
        branches = [self.student.forward_from(starts[i], sample.kspace, sample.mask, i)
                    for i in range(self.first, len(self.student.cascades))]
        out = sft_terms(teacher, branches, sample.target)
        out["loss"] = sum(self.weights[k] * v for k, v in out.items())
        return out


def student_state(extra: dict[str, Tensor]) -> dict[str, Tensor]:
    """The student's state_dict from an SFT checkpoint's "extra" (the objective's state)."""
    state = {k[len(STUDENT_PREFIX):]: v for k, v in extra.items() if k.startswith(STUDENT_PREFIX)}
    if not state:
        raise MrdistillError("checkpoint has no SFT student weights (was it trained with sft?)")
    return state
