"""Similarity-preserving KD (Tung & Mori 2019): samples that the teacher sees as similar should look
similar to the student too.

For a feature F (B, C, H, W), Q = F reshaped to (B, C*H*W), G = Q Q^T (B, B), and every row of G is
L2-normalised. The loss is ||G_T - G_S||_F^2 / B^2, averaged over the feature pairs. Only B x B
matrices are compared, so student and teacher features may differ in shape (no adapter needed).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mrdistill.distill.pairs import PairwiseKD, batch_matrix_distance, flatten
from mrdistill.distill.registry import register_kd


def similarity_matrix(feature: Tensor) -> Tensor:
    """float (B, C, H, W) -> (B, B): the batch Gram matrix with L2-normalised rows."""
    q = flatten(feature)
    return F.normalize(q @ q.t(), dim=1)


@register_kd("similarity")
class SimilarityPreserving(PairwiseKD):
    """Mean over pairs of ||norm(G_T) - norm(G_S)||_F^2 / B^2.

    Paper: Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

    Formula: G = Q Q^T (B, B) of the flattened features, rows L2-normalised; L = ||G_T - G_S||_F^2 /
        B^2.

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: similarity, weight: 1000.0}
    ```
    """

    method = "similarity"

    def pair_loss(self, fs: Tensor, ft: Tensor) -> Tensor:
        return batch_matrix_distance(similarity_matrix(fs), similarity_matrix(ft))
