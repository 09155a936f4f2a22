"""What every model returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class ReconOutput(NamedTuple):
    """image: float32 (N, C_net, H, W) in the network representation (use
    `physics.fft.magnitude` for the scored image); features: named intermediates
    (empty unless `return_features=True`), e.g. "cascade3.conv2" -> (N, 32, H, W)."""

    image: Tensor
    features: dict[str, Tensor]
