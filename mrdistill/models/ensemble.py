"""An ensemble of K registered models that see the same input: their mean is the prediction and
their disagreement (per-pixel variance of the magnitudes) is a confidence map.

Used for the self-supervised teachers of adaptive KD (Wu & Li 2024): each member is trained on its own
re-undersampled data, but at inference every member sees all of the acquired k-space.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule, declared
from mrdistill.models.registry import build_model, register_model
from mrdistill.physics.fft import magnitude


def member_variance(images: list[Tensor]) -> Tensor:
    """Per-pixel variance over members of their magnitudes: K x float (N, C_net, H, W) -> (N, 1, H, W).

    The population variance (divide by K), so two members a, b give ((|a| - |b|) / 2)^2.
    """
    mags = torch.stack([magnitude(x) for x in images])
    return mags.var(dim=0, unbiased=False)


@register_model("ensemble")
class Ensemble(ReconModule):
    """`members` copies of the registered model `member(**member_kwargs)`, initialised differently.

    forward(kspace, mask, *, return_features=False) -> ReconOutput with image = mean of the members'
    images (network layout, e.g. float32 (N, 2, H, W)); features (with `return_features`):
    "variance" float32 (N, 1, H, W) (see `member_variance`) and "member{k}.image" (1-based).
    """

    def __init__(self, member: str = "modl", members: int = 2,
                 member_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if member == "ensemble":
            raise MrdistillError("an ensemble cannot hold ensembles")
        if members < 1:
            raise MrdistillError(f"an ensemble needs at least 1 member, got {members}")
        # Members are built one after another from the caller's RNG stream, so they differ.
        self.members = nn.ModuleList(build_model(member, **(member_kwargs or {}))
                                     for _ in range(members))
        first = declared(self.members[0])  # the members share one layout
        self.input_kind, self.scale = first.input_kind, first.scale
        self.complex_input, self.in_channels = first.complex_input, first.in_channels
        self.image_channels, self.images = first.image_channels, first.images

    @property
    def accepts_smaps(self) -> bool:
        """Coil maps are passed on when every member uses them."""
        return all(declared(m).accepts_smaps for m in self.members)

    def forward(self, kspace: Tensor, mask: Tensor, *, smaps: Tensor | None = None,
                return_features: bool = False) -> ReconOutput:
        extra = {} if smaps is None else {"smaps": smaps}
        images = [m(kspace, mask, **extra).image for m in self.members]
        mean = torch.stack(images).mean(dim=0)
        features: dict[str, Tensor] = {}
        if return_features:
            features["variance"] = member_variance(images)
            features.update({f"member{k + 1}.image": x for k, x in enumerate(images)})
        return ReconOutput(image=mean, features=features)
