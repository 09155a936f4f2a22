"""The model contract: what every caller (training, predict, export, benchmark, distillation) may rely
on about a model, declared in one place.

A reconstruction model is an `nn.Module` with

    forward(kspace complex64 (N, C, H, W), mask float (N|1, 1, 1|H, W), *,
            return_features: bool = False[, smaps complex64 (N, C, H, W)]) -> ReconOutput

(a super-resolution model, `input_kind == "lowres"`, takes `(lowres float32 (N, in_channels, h, w),
None)` instead) and the attributes of `ReconModel` below. mrdistill's own models derive from
`ReconModule`, which holds the defaults, and set what differs. A plugin model that follows the
forward contract without declaring the attributes (docs/teachers.md) gets the defaults through
`declared(model)`, the one place that reads them: callers outside `models/` use `declared`, never
`getattr` on a model.
"""

from __future__ import annotations

from dataclasses import fields, make_dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from mrdistill.errors import MrdistillError

INPUT_KINDS = ("kspace", "lowres")


@runtime_checkable
class ReconModel(Protocol):
    """What a model declares.

    input_kind: "kspace" (reconstruction: `model(kspace, mask)`) or "lowres" (super-resolution:
        `model(lowres, None)`).
    complex_input: the data it reads are complex images (data mode "complex"); False for the
        real-image mode of KD-MRI's 1-channel networks.
    in_channels: channels of the network's input image layout (1 real, 2 complex, 2C for C coil
        images side by side).
    image_channels: channels of `ReconOutput.image` (1 for a magnitude or real image, 2 per complex
        image in the network layout).
    images: complex images per sample the model reconstructs (C coil images for a multi-coil
        model without coil maps, else 1).
    accepts_smaps: `run_model` passes coil maps (`Sample.smaps`) as `smaps=`.
    scale: the super-resolution factor (1 for reconstruction).
    exportable: `mrdistill export` builds a graph with data consistency inside for it.
    """

    input_kind: str
    complex_input: bool
    in_channels: int
    image_channels: int
    images: int
    accepts_smaps: bool
    scale: int
    exportable: bool

    def forward(self, x: Tensor, mask: Tensor | None, *, return_features: bool = False) -> Any:
        ...


class ReconModule(nn.Module):
    """Base class of mrdistill's models: the contract's defaults (a complex single-coil k-space
    model with a 2-channel network image, no coil maps, not exportable); subclasses set what
    differs, as class or instance attributes."""

    input_kind: str = "kspace"
    complex_input: bool = True
    in_channels: int = 2
    image_channels: int = 2
    images: int = 1
    accepts_smaps: bool = False
    scale: int = 1
    exportable: bool = False


# A model's contract values, read once by `declared`: the attributes of `ReconModel`, as a frozen
# dataclass made from its annotations (so the two lists cannot drift apart).
Declared = make_dataclass("Declared", list(ReconModel.__annotations__.items()), frozen=True)
Declared.__doc__ = "A model's contract values (see `ReconModel`), read once by `declared`."


DEFAULTS = {f.name: getattr(ReconModule, f.name) for f in fields(Declared)}


def declared(model: nn.Module) -> Any:
    """The contract values `model` declares, the `ReconModule` defaults for those it does not (a
    plugin model following only the forward contract). Raises `MrdistillError` naming the
    attribute for a value outside the contract (an unknown input kind, a non-positive count).
    Returns a frozen `Declared`, with the attributes of `ReconModel`."""
    values = {name: getattr(model, name, default) for name, default in DEFAULTS.items()}
    name = type(model).__name__
    if values["input_kind"] not in INPUT_KINDS:
        raise MrdistillError(f"{name}.input_kind must be one of {INPUT_KINDS}, got {values['input_kind']!r}")
    for key in ("complex_input", "accepts_smaps", "exportable"):
        if not isinstance(values[key], bool):
            raise MrdistillError(f"{name}.{key} must be true or false, got {values[key]!r}")
    for key in ("in_channels", "image_channels", "images", "scale"):
        if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1:
            raise MrdistillError(f"{name}.{key} must be an integer >= 1, got {values[key]!r}")
    if (values["input_kind"] == "lowres") != (values["scale"] > 1):
        raise MrdistillError(f"{name}: a super-resolution model (input_kind 'lowres') has scale >= 2 "
                             f"and a reconstruction model scale 1, got {values['input_kind']!r} with "
                             f"scale {values['scale']}")
    return Declared(**values)
