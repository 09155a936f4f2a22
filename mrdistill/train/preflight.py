"""Checks of a run's models against their config and data, before any folder is claimed.

A model's constructor checks its own arguments (DC-CNN: "a cascade needs at least 2 convs"); they
run here on PyTorch's "meta" device, which allocates nothing, so a big model costs no memory and a
bad argument is one line naming the config key instead of a traceback after the run folder was
claimed. Then the combinations that cannot work are refused: a complex-input model (two channels
per image) on real-image data, and, on the embedded corpus (whose coil count the config gives), a
model that cannot take the data's coils, found by one forward pass of a small CPU copy of the model
on zero k-space of the data's shape.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mrdistill.config import DataConfig
from mrdistill.data.sample import Sample
from mrdistill.errors import MrdistillError
from mrdistill.models.base import input_kind, run_model
from mrdistill.models.contract import declared
from mrdistill.models.registry import build_model
from mrdistill.physics.fft import ifft2c, image_to_network

PROBE_SIDE = 32  # the side of the probe's zero k-space (the models' smallest useful grid)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def build_checked(name: str, kwargs: dict[str, Any], where: str) -> nn.Module:
    """Model `name` built on the meta device (no memory): a constructor's own refusal
    (`ValueError`, `TypeError` for a missing argument) becomes `MrdistillError` naming `where`.
    A constructor that cannot run on the meta device at all is left to the real build."""
    try:
        with torch.device("meta"):
            return build_model(name, seed=0, **kwargs)
    except MrdistillError as exc:
        text = str(exc)
        raise MrdistillError(text if text.startswith(where) else f"{where}: {text}") from None
    except (ValueError, TypeError) as exc:
        raise MrdistillError(f"{where}: {name} refuses these arguments ({_first_line(exc)})") from None
    except Exception:  # noqa: BLE001 - not a refusal of the arguments: the real build will tell
        return nn.Module()


def check_model_for_data(name: str, kwargs: dict[str, Any], data: DataConfig,
                         where: str = "model.kwargs") -> None:
    """Refuse (naming `where`) a model whose constructor refuses `kwargs`, a complex-input model
    on `data.mode: real`, and, on embedded data, a model that cannot take `data.coils` coils."""
    model = build_checked(name, kwargs, where)
    if data.mode == "real" and declared(model).complex_input:
        raise MrdistillError(f"{where}: {name} takes complex images (2 channels each), but data.mode "
                             f"is real (1 channel); set data.mode: complex, or in_channels: 1")
    if data.dataset != "embedded" or data.superres is not None or input_kind(model) != "kspace":
        return  # file data bring their coils (known when read); super-resolution: check_model_data
    probe = build_model(name, seed=0, **kwargs).eval()
    side = min(PROBE_SIDE, data.image_size)
    kspace = torch.zeros(1, data.coils, side, side, dtype=torch.complex64)
    zero_filled = image_to_network(ifft2c(kspace), data.mode == "complex")
    # Simulated coils come with estimated maps (data.datasets.SliceDataset): so does the probe.
    smaps = torch.full_like(kspace, data.coils ** -0.5) if data.coils > 1 else None
    sample = Sample(kspace, torch.ones(1, 1, 1, side), zero_filled[:, :1], None, torch.ones(1),
                    ["probe"], [0], smaps)  # type: ignore[arg-type]
    try:
        with torch.no_grad():
            run_model(probe, sample)
    except (RuntimeError, ValueError) as exc:
        raise MrdistillError(f"{where}: {name} cannot take the data's {data.coils} coil(s) in "
                             f"{data.mode} mode ({_first_line(exc)})") from None
