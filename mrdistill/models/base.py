"""What every model returns, and the one place that decides what a model is fed."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from torch import Tensor, nn

from mrdistill.errors import MrdistillError
from mrdistill.models.contract import declared

if TYPE_CHECKING:
    from mrdistill.data.sample import Sample

class ReconOutput(NamedTuple):
    """image: float32 (N, C_net, H, W) in the network representation (use
    `physics.fft.magnitude` for the scored image); features: named intermediates
    (empty unless `return_features=True`), e.g. "cascade3.conv2" -> (N, 32, H, W)."""

    image: Tensor
    features: dict[str, Tensor]


def input_kind(model: nn.Module) -> str:
    """"kspace" (reconstruction: `model(kspace, mask)`, the default for every model) or "lowres"
    (super-resolution: `model(lowres float (N, 1, h, w), None)`), as the model declares it
    (`contract.declared`)."""
    return declared(model).input_kind


def coil_maps_for(model: nn.Module, sample: "Sample") -> Tensor | None:
    """The coil maps `run_model` passes to `model` for this batch: `sample.smaps` complex64
    (N, C, H, W) when the batch has them and the model declares `accepts_smaps` and reconstructs
    one image per sample, else None. A model given maps returns a coil-combined image; without
    maps, one image per coil (a MoDL with in_channels 2C denoises the C coil images jointly)."""
    smaps, contract = sample.smaps, declared(model)
    return smaps if smaps is not None and contract.accepts_smaps and contract.images == 1 else None


def run_model(model: nn.Module, sample: "Sample", return_features: bool = False) -> ReconOutput:
    """Run `model` on a batch with the input its `input_kind` asks for.

    kspace models get `(sample.kspace complex64 (N, C, H, W), sample.mask)` (and
    `smaps=sample.smaps` when the batch has coil maps and the model sets `accepts_smaps`); lowres
    models get
    `(sample.zero_filled, None)`, where super-resolution data sets put the low-res image
    float32 (N, 1, h, w) (their target is the high-res image (N, 1, H, W)).
    """
    if input_kind(model) == "lowres":
        lowres, target, scale = sample.zero_filled, sample.target, declared(model).scale
        # Reconstruction data hold a full-size zero-filled image here: refuse, never mis-score.
        if scale and target is not None and \
                tuple(n * scale for n in lowres.shape[-2:]) != tuple(target.shape[-2:]):
            raise MrdistillError(f"{type(model).__name__} upsamples x{scale}, but the data are not x{scale} "
                                 f"super-resolution data (input {tuple(lowres.shape[-2:])}, target "
                                 f"{tuple(target.shape[-2:])}): set data.superres.scale: {scale}")
        return model(lowres, None, return_features=return_features)
    # Multi-coil data carry coil maps; models that use them (accepts_smaps = True) get them.
    smaps = coil_maps_for(model, sample)
    if smaps is not None:
        return model(sample.kspace, sample.mask, smaps=smaps, return_features=return_features)
    return model(sample.kspace, sample.mask, return_features=return_features)
