"""Attention transfer (Zagoruyko & Komodakis 2017) between configured feature pairs.

The attention map of a feature F (N, C, H, W) is Q = sum_c |F_c|^p (N, H, W). Maps are compared after
normalisation, either per sample (the original method) or across the batch axis (what KD-MRI's code
does), and averaged over the feature pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.distill.pairs import default_pairs, pairs_of
from mrdistill.distill.registry import get_feature, register_kd
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.base import ReconOutput


def attention_map(feature: Tensor, p: float = 2.0) -> Tensor:
    """float (N, C, H, W) -> float (N, H*W): sum over channels of |F|^p."""
    return feature.abs().pow(p).sum(dim=1).flatten(1)


def normalise_map(q: Tensor, normalize: str) -> Tensor:
    """L2-normalise maps (N, HW) per sample ("sample") or along the batch axis ("batch", KD-MRI)."""
    return F.normalize(q, dim=1 if normalize == "sample" else 0)


def attention_distance(qs: Tensor, qt: Tensor, distance: str) -> Tensor:
    """Mean squared ("l2", Zagoruyko) or absolute ("l1", KD-MRI) difference of two maps -> scalar."""
    diff = qs - qt
    return diff.square().mean() if distance == "l2" else diff.abs().mean()


__all__ = ["AttentionTransfer", "attention_distance", "attention_map", "default_pairs",
           "normalise_map"]


@register_kd("attention")
class AttentionTransfer(nn.Module):
    """Mean over pairs of distance(norm(Q_S), norm(Q_T)); pairs map student key -> teacher key
    (None: by the models' depth, `distill.pairs.depth_pairs`).

    Paper: Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.

    Formula: Q = sum_c |F_c|^p (N, H, W); L = mean over pairs of d(Q_S / ||Q_S||, Q_T / ||Q_T||).

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: attention, weight: 1000.0, kwargs: {p: 2.0, normalize: sample}}
    ```
    """

    needs_features = True

    def __init__(self, pairs: dict[str, str] | None = None, p: float = 2.0,
                 normalize: str = "sample", distance: str | None = None) -> None:
        super().__init__()
        check_choice("attention normalisation", normalize, ("sample", "batch"))
        distance = distance or ("l2" if normalize == "sample" else "l1")
        check_choice("attention distance", distance, ("l1", "l2"))
        self.pairs = dict(pairs) if pairs else None
        self.p, self.normalize, self.distance = p, normalize, distance

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        losses = []
        for s_key, t_key in pairs_of(self, student, teacher).items():
            fs = get_feature(student.features, s_key, "student")
            ft = get_feature(teacher.features, t_key, "teacher").detach()
            if fs.shape[-2:] != ft.shape[-2:]:
                raise MrdistillError(
                    f"attention pair {s_key}->{t_key}: spatial sizes differ "
                    f"{tuple(fs.shape[-2:])} vs {tuple(ft.shape[-2:])}"
                )
            qs = normalise_map(attention_map(fs, self.p), self.normalize)
            qt = normalise_map(attention_map(ft, self.p), self.normalize)
            losses.append(attention_distance(qs, qt, self.distance))
        return torch.stack(losses).mean()
