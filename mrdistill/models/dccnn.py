"""DC-CNN (Schlemper et al. 2017): cascades of a plain CNN followed by data consistency.

KD-MRI's teacher is `dccnn(cascades=5, convs=5, channels=32, in_channels=1)` (141,765 parameters)
and its student `convs=3` (49,285 parameters); the adaptive-KD student is
`dccnn(cascades=5, convs=5, in_channels=2, activation="leaky_relu", residual=True)`.
`coil_maps=True` (complex input) is the multi-coil form: the CNNs see the coil-combined complex
image S^H x and every DC acts on each coil's k-space through the maps (SENSE data consistency).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule
from mrdistill.models.registry import register_model
from mrdistill.physics.consistency import dc_network_image
from mrdistill.physics.fft import ifft2c, image_to_network
from mrdistill.physics.operators import combine_coils

ACTIVATIONS = ("relu", "leaky_relu")


class Cascade(nn.Module):
    """conv(in->ch), (convs-2) x conv(ch->ch), conv(ch->in); 3x3, padding 1, bias; activation after
    every conv but the last."""

    def __init__(self, convs: int, channels: int, in_channels: int, activation: str) -> None:
        super().__init__()
        widths = [in_channels] + [channels] * (convs - 1) + [in_channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, padding=1) for i in range(convs)
        )
        # Not in place: a feature hook on a conv (distill.hooks) must keep the conv's own output.
        self.act = nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.01)

    def forward(self, x: Tensor, features: dict[str, Tensor] | None, prefix: str) -> Tensor:
        """x: float (N, in, H, W) -> (N, in, H, W); fills `features[prefix + "convJ"]` (1-based)."""
        last = len(self.convs) - 1
        for j, conv in enumerate(self.convs):
            x = conv(x)
            if j < last:
                x = self.act(x)
            if features is not None:
                features[f"{prefix}conv{j + 1}"] = x
        return x


@register_model("dccnn")
class DCCNN(ReconModule):
    """Deep cascade of CNNs with hard or soft (learned lambda) data consistency.

    Soft DC learns one lambda > 0 per cascade as softplus of a free parameter (`raw_lambdas`), as
    MoDL does, so gradient steps can never make it negative (a negative lambda would extrapolate
    away from the measured k-space instead of blending towards it); `dc_lambda` is its start value.

    forward(kspace: complex64 (N, C, H, W), mask: float (N, 1, 1|H, W), *, smaps=None) -> ReconOutput
    with image float32 (N, in_channels, H, W) and, with `return_features`, the keys
    "cascade{i}.conv{j}" (activation after conv j of cascade i, both 1-based) and "cascade{i}.out".
    Without coil maps the C channels of k-space are C images (C = 1: single-coil). With
    `coil_maps=True` a multi-coil batch needs `smaps` complex64 (N, C, H, W) (`run_model` passes
    `Sample.smaps`); the CNNs see one coil-combined image and DC keeps all C coils' samples.
    """

    def __init__(self, cascades: int = 5, convs: int = 5, channels: int = 32, in_channels: int = 1,
                 activation: str = "relu", residual: bool = False, dc: str = "hard",
                 dc_lambda: float = 1.0, coil_maps: bool = False) -> None:
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("data consistency", dc, ("hard", "soft"))
        if convs < 2:
            raise ValueError(f"a cascade needs at least 2 convs, got {convs}")
        if in_channels not in (1, 2):
            raise ValueError(f"in_channels must be 1 (real) or 2 (complex), got {in_channels}")
        if dc == "soft" and not (math.isfinite(dc_lambda) and dc_lambda > 0):
            raise MrdistillError(f"dccnn dc_lambda must be a finite number > 0, got {dc_lambda}")
        if coil_maps and in_channels != 2:
            raise ValueError("dccnn coil_maps=True needs in_channels=2 (coil maps are complex)")
        self.complex_input = in_channels == 2
        self.accepts_smaps = coil_maps
        # deploy.graphs.DCCNNGraph and the fast CPU path are single-coil: the SENSE form runs eager.
        self.exportable = not coil_maps
        self.in_channels = self.image_channels = in_channels
        self.residual = residual
        self.cascades = nn.ModuleList(
            Cascade(convs, channels, in_channels, activation) for _ in range(cascades)
        )
        # One learnable lambda per cascade for soft DC; none for hard DC (KD-MRI's parameter counts).
        # softplus(raw) = dc_lambda at the start.
        self.raw_lambdas = (
            nn.Parameter(torch.full((cascades,), math.log(math.expm1(float(dc_lambda)))))
            if dc == "soft" else None
        )
        self._register_load_state_dict_pre_hook(_upgrade_plain_lambdas)

    @property
    def lambdas(self) -> Tensor | None:
        """Soft-DC weights lambda > 0, float32 (cascades,); None for hard DC."""
        return None if self.raw_lambdas is None else F.softplus(self.raw_lambdas)

    def forward(self, kspace: Tensor, mask: Tensor, *, smaps: Tensor | None = None,
                return_features: bool = False) -> ReconOutput:
        # zero-filled (N, in, H, W): each coil's image, or their combination S^H F^H y with maps
        coil_images = ifft2c(kspace)
        x = image_to_network(coil_images if smaps is None else combine_coils(coil_images, smaps),
                             self.complex_input)
        return self.forward_from(x, kspace, mask, 0, smaps=smaps, return_features=return_features)

    def _check_maps(self, kspace: Tensor, smaps: Tensor | None) -> None:
        if smaps is not None and not self.accepts_smaps:
            raise ValueError("this dccnn was built without coil_maps: it takes no smaps")
        if self.accepts_smaps and smaps is None and kspace.shape[1] > 1:
            raise ValueError(f"dccnn(coil_maps=True) needs smaps for {kspace.shape[1]}-coil k-space")

    def forward_from(self, x: Tensor, kspace: Tensor, mask: Tensor, start: int, *,
                     smaps: Tensor | None = None, return_features: bool = False) -> ReconOutput:
        """Run only cascades start+1..n (1-based) on the network image x, float (N, in, H, W):
        e.g. another DC-CNN's "cascade{start}.out" (SFT's student branches). start=0 with the
        zero-filled image equals `forward`. Feature keys keep their cascade numbers."""
        if not 0 <= start <= len(self.cascades):
            raise ValueError(f"start must be in 0..{len(self.cascades)}, got {start}")
        self._check_maps(kspace, smaps)
        features: dict[str, Tensor] | None = {} if return_features else None
        for i in range(start, len(self.cascades)):
            prefix = f"cascade{i + 1}."
            out = self.cascades[i](x, features, prefix)
            if self.residual:
                out = x + out
            lam = None if self.lambdas is None else self.lambdas[i]
            x = dc_network_image(out, kspace, mask, self.complex_input, lam, smaps)
            if features is not None:
                features[f"{prefix}out"] = x
        return ReconOutput(image=x, features=features or {})


def _upgrade_plain_lambdas(state: dict[str, Any], prefix: str, *_: Any) -> None:
    """Checkpoints written before lambda was constrained store the lambdas themselves under
    `lambdas`: load them as the equivalent raw values (refused if one went negative, since no
    constrained model can reproduce that network)."""
    old = state.pop(prefix + "lambdas", None)
    if old is None:
        return
    if not bool(torch.all(old > 0)):
        raise MrdistillError(
            f"checkpoint has soft-DC lambdas {old.tolist()}: a lambda <= 0 is not data consistency; "
            "retrain with this version (lambda is now kept > 0)"
        )
    state[prefix + "raw_lambdas"] = old + torch.log(-torch.expm1(-old))  # softplus^-1, stable
