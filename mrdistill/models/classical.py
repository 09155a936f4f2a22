"""Classical reconstructions as modules, so evaluation runs them exactly like a trained model.

`ClassicalRecon("cg_sense")` is CG-SENSE (`physics.sense.cg_sense`); `ClassicalRecon("l1_wavelet")`
is sigpy's L1-wavelet compressed sensing (`physics.sense.l1_wavelet`). Both use the coil maps the
data set gives (`Sample.smaps`: `data.coil_maps` ratio or ESPIRiT), or the ratio estimate from the
calibration region when the batch has none (simulated multi-coil data). They have no parameters,
are not registered models (nothing to train) and exist for multi-coil data: with one coil
CG-SENSE is the zero-filled image divided by (1 + lam).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mrdistill.data.coils import estimate_smaps
from mrdistill.models.base import ReconOutput
from mrdistill.physics.fft import image_to_network
from mrdistill.physics.sense import SenseSettings, cg_sense, l1_wavelet

CLASSICAL = {"cg_sense": "CG-SENSE", "l1_wavelet": "L1-wavelet"}


class ClassicalRecon(nn.Module):
    """forward(kspace complex (N, C, H, W), mask, *, smaps=None) -> ReconOutput(image float32
    (N, 2, H, W) real/imag of the coil-combined image, {})."""

    input_kind = "kspace"
    accepts_smaps = True

    def __init__(self, method: str, settings: SenseSettings = SenseSettings()) -> None:
        super().__init__()
        if method not in CLASSICAL:
            raise ValueError(f"unknown classical method {method!r}; valid: {sorted(CLASSICAL)}")
        self.method, self.settings = method, settings

    @torch.no_grad()
    def forward(self, kspace: Tensor, mask: Tensor, *, smaps: Tensor | None = None,
                return_features: bool = False) -> ReconOutput:
        if smaps is None:
            smaps = estimate_smaps(kspace, mask)
        if self.method == "cg_sense":
            image = cg_sense(kspace, mask, smaps, self.settings)
        else:
            image = l1_wavelet(kspace, mask, smaps)
        return ReconOutput(image_to_network(image, True), {})
