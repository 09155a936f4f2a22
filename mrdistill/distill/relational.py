"""Relational KD (Park et al. 2019): transfer the geometry of the batch, distances and angles.

Each sample's feature is flattened into an embedding t_i. Distance-wise: psi_D(i, j) = ||t_i - t_j|| / mu
with mu the mean distance over all pairs i != j. Angle-wise: psi_A(i, j, k) = cos of the angle at t_j
between t_i and t_k, over all triplets of distinct samples. Both are compared with the Huber loss
(delta 1) and averaged; the loss is `distance_weight * L_D + angle_weight * L_A` (the paper's
25 : 50 ratio is the default 1 : 2), averaged over the feature pairs.

Everything is computed from the batch Gram matrix of the centred embeddings in float64: it gives all
pairwise distances and angles without a (B, B, D) difference tensor, and float64 keeps the
differences of large, nearly equal inner products accurate. Needs a batch of at least 2 (distances)
or 3 (angles); smaller batches contribute zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.distill.pairs import flatten, gather, pairs_of, resolve_pairs
from mrdistill.distill.registry import register_kd
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput

_EPS = 1e-12


def _gram(embedding: Tensor) -> Tensor:
    """(B, D) -> (B, B) float64 Gram matrix of the batch-centred embeddings (distances and angles
    do not depend on a common offset, and centring shrinks the numbers that get subtracted)."""
    e = embedding.double()
    e = e - e.mean(dim=0, keepdim=True)
    return e @ e.t()


def distance_potential(embedding: Tensor) -> Tensor:
    """(B, D) -> (B, B) float64 distances divided by their mean over i != j (diagonal 0)."""
    g = _gram(embedding)
    sq = g.diag()[:, None] + g.diag()[None, :] - 2 * g
    off = ~torch.eye(g.shape[0], dtype=torch.bool, device=g.device)
    d = torch.where(off, sq.clamp_min(_EPS).sqrt(), torch.zeros_like(sq))
    mu = d[off].mean().clamp_min(_EPS)
    return d / mu


def angle_potential(embedding: Tensor) -> Tensor:
    """(B, D) -> (B, B, B) float64 cos of the angle at t_j between t_i and t_k, [i, j, k]."""
    g = _gram(embedding)
    gd = g.diag()
    # <t_i - t_j, t_k - t_j> = G_ik - G_ij - G_jk + G_jj
    dot = g[:, None, :] - g[:, :, None] - g.t()[None, :, :] + gd[None, :, None]
    sq = (gd[:, None] + gd[None, :] - 2 * g).clamp_min(_EPS)  # ||t_i - t_j||^2, [i, j]
    norm = sq.sqrt()
    return dot / (norm[:, :, None] * norm.t()[None, :, :])


def _distinct(b: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Masks of pairs i != j (B, B) and of triplets of distinct samples (B, B, B)."""
    eye = torch.eye(b, dtype=torch.bool, device=device)
    pairs = ~eye
    triplets = pairs[:, :, None] & pairs[None, :, :] & pairs[:, None, :]
    return pairs, triplets


def rkd_terms(es: Tensor, et: Tensor) -> tuple[Tensor, Tensor]:
    """Huber losses (distance, angle) between student and teacher embeddings (B, D) -> 2 scalars."""
    b = es.shape[0]
    zero = es.sum() * 0.0  # a zero that stays in the graph, so backward() still works
    pairs, triplets = _distinct(b, es.device)
    dist = zero
    if b >= 2:
        dist = F.smooth_l1_loss(distance_potential(es)[pairs], distance_potential(et)[pairs]).float()
    angle = zero
    if b >= 3:
        angle = F.smooth_l1_loss(angle_potential(es)[triplets], angle_potential(et)[triplets]).float()
    return dist, angle


@register_kd("relational")
class RelationalKD(nn.Module):
    """Mean over pairs of distance_weight * L_D + angle_weight * L_A (Huber, delta 1).

    Paper: Park et al., "Relational Knowledge Distillation", CVPR 2019.

    Formula: L = distance_weight * Huber(psi_D(S), psi_D(T)) + angle_weight * Huber(psi_A(S),
        psi_A(T)), psi_D the pair distances / their mean, psi_A the triplet angle cosines.

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: relational, weight: 1.0, kwargs: {distance_weight: 1.0, angle_weight: 2.0}}
    ```
    """

    needs_features = True

    def __init__(self, pairs: dict[str, str] | None = None, distance_weight: float = 1.0,
                 angle_weight: float = 2.0) -> None:
        super().__init__()
        if distance_weight < 0 or angle_weight < 0 or distance_weight + angle_weight == 0:
            raise MrdistillError("relational: distance_weight and angle_weight must be >= 0 and "
                                 f"not both 0, got {distance_weight}, {angle_weight}")
        self.pairs = resolve_pairs(pairs, "relational")
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def setup(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> None:
        """Check that every key exists before training starts."""
        gather(student, teacher, pairs_of(self, student, teacher))

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        losses = []
        for _, _, fs, ft in gather(student, teacher, pairs_of(self, student, teacher)):
            dist, angle = rkd_terms(flatten(fs), flatten(ft))
            losses.append(self.distance_weight * dist + self.angle_weight * angle)
        return torch.stack(losses).mean()
