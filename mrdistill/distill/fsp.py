"""Flow of solution procedure (Yim et al. 2017): match the Gram ("FSP") matrices between two feature
maps of the same network.

G(F1, F2)[i, j] = sum_{h,w} F1[i, h, w] F2[j, h, w] / (H W) is a (C1, C2) matrix per sample: how the
network transforms one feature into the next. The loss is the squared Frobenius distance between
the student's and the teacher's FSP matrices, averaged over the batch and over the flows.

The flows are taken between *consecutive* entries of the ordered pairs `{student_key: teacher_key}`:
with the default pairs (conv2/conv3 of each DC-CNN cascade) that is one FSP matrix per pair of
consecutive cascades, as SFT-KD-Recon uses it. FSP has no adapter: the channel counts of each
student feature and its teacher partner must agree.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.distill.pairs import gather, pairs_of, resolve_pairs, shape_error
from mrdistill.distill.registry import register_kd
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput


def fsp_matrix(first: Tensor, second: Tensor) -> Tensor:
    """float (N, C1, H, W), (N, C2, H, W) -> (N, C1, C2): spatial mean of channel products."""
    h, w = first.shape[-2:]
    return torch.einsum("nihw,njhw->nij", first, second) / (h * w)


def fsp_distance(gs: Tensor, gt: Tensor) -> Tensor:
    """Squared Frobenius distance of FSP matrices (N, C1, C2), averaged over the batch -> scalar."""
    return (gs - gt).square().sum(dim=(1, 2)).mean()


@register_kd("fsp")
class FlowOfSolution(nn.Module):
    """Mean over consecutive pairs k of ||G(S_k, S_k+1) - G(T_k, T_k+1)||_F^2 (needs >= 2 pairs).

    Paper: Yim et al., "A Gift from Knowledge Distillation: Fast Optimization, Network
    Minimization and Transfer Learning", CVPR 2017.

    Formula: G(F1, F2)[i, j] = sum_hw F1[i, h, w] F2[j, h, w] / (H W); L = mean_k ||G(S_k, S_k+1) -
        G(T_k, T_k+1)||_F^2.

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: fsp, weight: 1.0}
    ```
    """

    needs_features = True

    def __init__(self, pairs: dict[str, str] | None = None) -> None:
        super().__init__()
        self.pairs = resolve_pairs(pairs, "fsp")
        self._check_count()

    def _check_count(self) -> None:
        if self.pairs is not None and len(self.pairs) < 2:
            raise MrdistillError("fsp needs at least two feature pairs: FSP matrices are taken "
                                 f"between consecutive features; got {list(self.pairs)}")

    def _checked(self, student: ReconOutput, teacher: ReconOutput) -> list[tuple[Tensor, Tensor]]:
        feats = []
        pairs = pairs_of(self, student, teacher)
        self._check_count()
        for s_key, t_key, fs, ft in gather(student, teacher, pairs):
            if fs.shape[1:] != ft.shape[1:]:
                raise shape_error("fsp", s_key, t_key, fs, ft, teacher.features,
                                  " (FSP has no adapter)")
            feats.append((fs, ft))
        keys = list(pairs)
        for k in range(len(feats) - 1):
            if feats[k][0].shape[-2:] != feats[k + 1][0].shape[-2:]:
                raise MrdistillError(f"fsp flow {keys[k]}->{keys[k + 1]}: spatial sizes differ "
                                     f"{tuple(feats[k][0].shape[-2:])} vs "
                                     f"{tuple(feats[k + 1][0].shape[-2:])}")
        return feats

    def setup(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> None:
        """Check keys and shapes before training starts."""
        self._checked(student, teacher)

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        feats = self._checked(student, teacher)
        losses = [fsp_distance(fsp_matrix(feats[k][0], feats[k + 1][0]),
                               fsp_matrix(feats[k][1], feats[k + 1][1]))
                  for k in range(len(feats) - 1)]
        return torch.stack(losses).mean()
