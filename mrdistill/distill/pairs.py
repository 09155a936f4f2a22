"""Feature pairs shared by the feature-based KD losses.

Every feature method is configured by an ordered mapping `{student_key: teacher_key}`. Without
one, the pairs follow the models' actual depth (`depth_pairs`, filled in on first use): the middle
conv of every student cascade with the middle conv of the teacher cascade at the same relative
depth, which for KD-MRI's D3C5 student and D5C5 teacher is the paper's student conv2 <-> teacher
conv3 of each of the 5 cascades. These helpers look the features up, detach the teacher side, and
turn bad keys or shapes into one-line `MrdistillError`s that name the valid choices.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from mrdistill.distill.registry import get_feature
from mrdistill.errors import MrdistillError
from mrdistill.data.sample import Sample
from mrdistill.models.base import ReconOutput

Pair = tuple[str, str, Tensor, Tensor]


_CONV = re.compile(r"cascade(\d+)\.conv(\d+)$")


def default_pairs(cascades: int = 5, student_conv: int = 2, teacher_conv: int = 3) -> dict[str, str]:
    """KD-MRI's pairs: student conv2 <-> teacher conv3 of every one of 5 DC-CNN cascades."""
    return {f"cascade{i}.conv{student_conv}": f"cascade{i}.conv{teacher_conv}"
            for i in range(1, cascades + 1)}


def _cascade_convs(features: dict[str, Tensor]) -> dict[int, int]:
    """{cascade number: number of convs} of features named `cascade<i>.conv<j>` (1-based)."""
    depth: dict[int, int] = {}
    for key in features:
        m = _CONV.match(key)
        if m:
            depth[int(m[1])] = max(depth.get(int(m[1]), 0), int(m[2]))
    return depth


def depth_pairs(student: dict[str, Tensor], teacher: dict[str, Tensor], method: str) -> dict[str, str]:
    """Default pairs from the features the models actually produce: for student cascade i of n_S,
    its middle conv (conv ceil(D_S / 2)) <-> the middle conv of teacher cascade ceil(i n_T / n_S).
    Models without `cascade<i>.conv<j>` features need explicit pairs (the error says so)."""
    s_depth, t_depth = _cascade_convs(student), _cascade_convs(teacher)
    if not s_depth or not t_depth:
        side = "student" if not s_depth else "teacher"
        raise MrdistillError(f"{method}: the {side} has no cascade<i>.conv<j> features to pair by "
                             f"default; set kwargs.pairs {{student_key: teacher_key}}")
    n_s, n_t = max(s_depth), max(t_depth)
    pairs = {}
    for i in sorted(s_depth):
        j = -(-i * n_t // n_s)
        if j in t_depth:
            pairs[f"cascade{i}.conv{-(-s_depth[i] // 2)}"] = f"cascade{j}.conv{-(-t_depth[j] // 2)}"
    return pairs


def pairs_of(module: nn.Module, student: ReconOutput, teacher: ReconOutput) -> dict[str, str]:
    """`module.pairs`, filled in from the models' depth on first use when it was None (default)."""
    if module.pairs is None:
        module.pairs = depth_pairs(student.features, teacher.features, type(module).__name__)
    return module.pairs


def resolve_pairs(pairs: dict[str, str] | None, method: str) -> dict[str, str] | None:
    """The configured pairs (a copy), or None: pairs by depth, filled in on first use (`pairs_of`);
    bad types raise."""
    if pairs is None:
        return None
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
        gather(student, teacher, pairs_of(self, student, teacher))

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        pairs = pairs_of(self, student, teacher)
        return torch.stack([self.pair_loss(fs, ft)
                            for _, _, fs, ft in gather(student, teacher, pairs)]).mean()
