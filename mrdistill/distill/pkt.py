"""Probabilistic knowledge transfer (Passalis & Tefas 2018): match the probability distributions
that the two feature spaces induce over the batch.

Each sample's feature is flattened and L2-normalised; the cosine kernel K(i, j) = (cos(f_i, f_j) + 1) / 2
lies in [0, 1]. The conditional probability of sample i given sample j is
p(i|j) = K(i, j) / sum_{k != j} K(k, j), over i != j (as in the paper; the authors' code also keeps
the i == j terms). The loss is the KL divergence sum_i p_T(i|j) log(p_T(i|j) / p_S(i|j)), averaged
over j and over the feature pairs. Needs a batch of at least 3 to say anything (with 2 samples every
conditional distribution is a single certain event).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mrdistill.distill.pairs import PairwiseKD, flatten
from mrdistill.distill.registry import register_kd

_EPS = 1e-7  # keeps log finite where a kernel value is exactly 0 (opposite embeddings)


def conditional_probabilities(feature: Tensor) -> Tensor:
    """float (B, C, H, W) -> (B, B) p(i|j) at [i, j]; columns sum to 1 over i != j; diagonal 0."""
    f = F.normalize(flatten(feature), dim=1)
    k = (f @ f.t() + 1.0) / 2.0
    k = k.masked_fill(torch.eye(k.shape[0], dtype=torch.bool, device=k.device), 0.0)
    return k / k.sum(dim=0, keepdim=True).clamp_min(_EPS)


def pkt_divergence(ps: Tensor, pt: Tensor) -> Tensor:
    """Mean over columns j of KL(p_T(.|j) || p_S(.|j)) for (B, B) matrices -> scalar."""
    kl = pt * torch.log((pt + _EPS) / (ps + _EPS))
    return kl.sum(dim=0).mean()


@register_kd("pkt")
class ProbabilisticTransfer(PairwiseKD):
    """Mean over pairs of KL(p_T || p_S) of the cosine-kernel conditional probabilities.

    Paper: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge
    Transfer", ECCV 2018.

    Formula: K(i, j) = (cos(f_i, f_j) + 1) / 2, p(i|j) = K(i, j) / sum_{k != j} K(k, j); L = mean_j
        sum_i p_T(i|j) log(p_T(i|j) / p_S(i|j)).

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: pkt, weight: 1.0}
    ```
    """

    method = "pkt"

    def pair_loss(self, fs: Tensor, ft: Tensor) -> Tensor:
        if fs.shape[0] < 2:  # no other sample to condition on
            return fs.sum() * 0.0
        return pkt_divergence(conditional_probabilities(fs), conditional_probabilities(ft))
