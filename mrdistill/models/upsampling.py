"""Super-resolution models at work: upsampling images with one, and checking it against the data
(both read the model's declared contract, `contract.declared`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mrdistill.config import DataConfig
from mrdistill.data.superres import check_image
from mrdistill.errors import MrdistillError
from mrdistill.models.contract import declared


def upsample(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """Super-resolve an image with a trained SR model (`input_kind == "lowres"`).

    image: (H, W) or a slice stack (S, H, W), any real dtype (complex: magnitude is used).
    Returns float32 (s*H, s*W) or (S, s*H, s*W). Intensities are divided by the stack maximum
    (training slices are normalised per volume the same way) and scaled back afterwards.
    Raises `MrdistillError` for a reconstruction model or a colour / wrongly shaped image.
    """
    if declared(model).input_kind != "lowres":
        raise MrdistillError(f"{type(model).__name__} is a reconstruction model (input_kind "
                             f"'kspace'); upsampling needs a super-resolution model (input_kind 'lowres')")
    arr = np.asarray(image)
    stack = check_image(arr).astype(np.float32)
    peak = float(np.abs(stack).max())
    norm = peak if peak > 0 else 1.0
    device = next(iter(model.parameters()), torch.empty(0)).device
    model.eval()
    parts = []
    with torch.no_grad():
        for k in range(0, len(stack), 8):
            x = torch.from_numpy(stack[k:k + 8] / norm)[:, None].to(device)
            parts.append(model(x, None).image[:, 0].float().cpu())
    out = (torch.cat(parts).numpy() * norm).astype(np.float32)
    return out[0] if arr.ndim == 2 else out


def check_model_data(model: nn.Module, cfg: DataConfig, role: str = "model") -> None:
    """`MrdistillError` when a super-resolution model meets reconstruction data or another scale
    (k-space models run on both kinds of data)."""
    contract = declared(model)
    if contract.input_kind != "lowres":
        return
    scale = contract.scale
    if cfg.superres is None:
        raise MrdistillError(f"the {role} is a super-resolution model (x{scale}) but the data are "
                             f"for reconstruction: set data.superres.scale: {scale}")
    if scale != cfg.superres.scale:
        raise MrdistillError(f"the {role} upsamples x{scale} but data.superres.scale is "
                             f"{cfg.superres.scale}: make them equal")
