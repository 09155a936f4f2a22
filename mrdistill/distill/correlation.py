"""Correlation congruence (Peng et al. 2019): transfer the correlation between samples, not only
each sample's embedding.

Each sample's feature is flattened and L2-normalised into an embedding f_i. The correlation matrix
C[i, j] = k(f_i, f_j) (B x B) uses a Gaussian RBF kernel exp(-gamma ||f_i - f_j||^2), approximated
as in the paper by its order-P Taylor series, which on unit vectors is
    k(f_i, f_j) ~ sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (f_i . f_j)^p,
or the plain bilinear kernel f_i . f_j. The loss is ||C_T - C_S||_2^2 / B^2, averaged over pairs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mrdistill.distill.pairs import PairwiseKD, batch_matrix_distance, flatten
from mrdistill.distill.registry import register_kd
from mrdistill.errors import MrdistillError, check_choice


def correlation_matrix(feature: Tensor, kernel: str = "gaussian", gamma: float = 0.4,
                       order: int = 2) -> Tensor:
    """float (B, C, H, W) -> (B, B) kernel matrix of the L2-normalised flattened features."""
    f = F.normalize(flatten(feature), dim=1)
    cos = f @ f.t()
    if kernel == "bilinear":
        return cos
    terms = [(2 * gamma) ** p / math.factorial(p) * cos.pow(p) for p in range(order + 1)]
    return math.exp(-2 * gamma) * torch.stack(terms).sum(dim=0)


@register_kd("correlation")
class CorrelationCongruence(PairwiseKD):
    """Mean over pairs of ||C_T - C_S||^2 / B^2 (Gaussian kernel, Taylor order P, or bilinear).

    Paper: Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019.

    Formula: C[i, j] = k(f_i, f_j) over the batch (Gaussian RBF by its Taylor series, or f_i . f_j);
        L = ||C_T - C_S||^2 / B^2.

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: correlation, weight: 1.0, kwargs: {kernel: gaussian, gamma: 0.4, order: 2}}
    ```
    """

    method = "correlation"

    def __init__(self, pairs: dict[str, str] | None = None, kernel: str = "gaussian",
                 gamma: float = 0.4, order: int = 2) -> None:
        super().__init__(pairs)
        check_choice("correlation kernel", kernel, ("gaussian", "bilinear"))
        if gamma <= 0 or order < 0:
            raise MrdistillError(f"correlation: gamma must be > 0 and order >= 0, "
                                 f"got gamma={gamma}, order={order}")
        self.kernel, self.gamma, self.order = kernel, float(gamma), int(order)

    def pair_loss(self, fs: Tensor, ft: Tensor) -> Tensor:
        args = (self.kernel, self.gamma, self.order)
        return batch_matrix_distance(correlation_matrix(fs, *args), correlation_matrix(ft, *args))
