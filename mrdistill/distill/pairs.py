"""Feature pairs shared by the feature-based KD losses.

Every feature method is configured by an ordered mapping `{student_key: teacher_key}` (default:
KD-MRI's student conv2 <-> teacher conv3 of each of 5 DC-CNN cascades). These helpers look the
features up, detach the teacher side, and turn bad keys or shapes into one-line `MrdistillError`s
that name the valid choices.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mrdistill.distill.attention import default_pairs
from mrdistill.distill.registry import get_feature
from mrdistill.errors import MrdistillError
from mrdistill.data.sample import Sample
from mrdistill.models.base import ReconOutput

Pair = tuple[str, str, Tensor, Tensor]


def resolve_pairs(pairs: dict[str, str] | None, method: str) -> dict[str, str]:
    """The configured pairs (a copy), or the default pairs when None; bad types raise."""
    if pairs is None:
        return default_pairs()
    if not isinstance(pairs, dict) or not pairs or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
        raise MrdistillError(f"{method}: pairs must be a non-empty mapping "
                             f"{{student_key: teacher_key}}, got {pairs!r}")
    return dict(pairs)


def gather(student: ReconOutput, teacher: ReconOutput, pairs: dict[str, str]) -> list[Pair]:
    """[(s_key, t_key, F_S, F_T.detach())] in pair order; a missing key names the valid ones."""
    return [(s, t, get_feature(student.features, s, "student"),
             get_feature(teacher.features, t, "teacher").detach()) for s, t in pairs.items()]


def shape_error(method: str, s_key: str, t_key: str, fs: Tensor, ft: Tensor,
                teacher_features: dict[str, Tensor], hint: str = "") -> MrdistillError:
    """A one-line error for mismatched pair shapes, naming the teacher keys that would fit."""
    want = tuple(fs.shape[1:])
    fits = [k for k, v in teacher_features.items() if tuple(v.shape[1:]) == want]
    valid = ", ".join(fits) if fits else "(none)"
    return MrdistillError(
        f"{method} pair {s_key}->{t_key}: student feature {want} and teacher feature "
        f"{tuple(ft.shape[1:])} differ{hint}; teacher features of shape {want}: {valid}")


def flatten(feature: Tensor) -> Tensor:
    """float (N, C, H, W) -> (N, C*H*W): one embedding per sample for the relational methods."""
    return feature.flatten(1)


def batch_matrix_distance(ms: Tensor, mt: Tensor) -> Tensor:
    """||M_T - M_S||_F^2 / B^2 for (B, B) batch relation matrices (SP, CC) -> scalar."""
    b = ms.shape[0]
    return (mt - ms).square().sum() / (b * b)


class PairwiseKD(nn.Module):
    """A feature KD loss that scores each {student_key: teacher_key} pair on its own and averages:
    subclasses define `pair_loss(F_S, F_T) -> scalar` (the teacher side arrives detached)."""

    needs_features = True
    method = "pairwise"  # the registry name, for error messages

    def __init__(self, pairs: dict[str, str] | None = None) -> None:
        super().__init__()
        self.pairs = resolve_pairs(pairs, self.method)

    def pair_loss(self, fs: Tensor, ft: Tensor) -> Tensor:
        raise NotImplementedError

    def setup(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> None:
        """Check that every key exists before training starts."""
        gather(student, teacher, self.pairs)

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        return torch.stack([self.pair_loss(fs, ft)
                            for _, _, fs, ft in gather(student, teacher, self.pairs)]).mean()
