"""Tiny checkpoints of every exportable model variant, shared by the deploy tests."""

from __future__ import annotations

from pathlib import Path

import torch

from mrdistill.config import DataConfig, MaskConfig
from mrdistill.models import build_model
from mrdistill.train.checkpoint import data_meta, model_payload, save_checkpoint

H, W = 24, 32  # not square, so a transposed DFT matrix cannot pass

VARNET = {"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 1}

# id -> (model name, kwargs, coils, mask kind)
CASES = {
    "dccnn-real-hard-column": ("dccnn", {"cascades": 2, "convs": 3, "channels": 8}, 1, "kdmri"),
    "dccnn-complex-soft-residual-column": (
        "dccnn", {"cascades": 2, "convs": 3, "channels": 8, "in_channels": 2, "residual": True,
                  "dc": "soft", "dc_lambda": 2.0, "activation": "leaky_relu"}, 1, "random"),
    "dccnn-real-soft-grid": ("dccnn", {"cascades": 2, "convs": 3, "channels": 8, "dc": "soft"}, 1,
                             "gaussian2d"),
    "dccnn-complex-hard-grid": ("dccnn", {"cascades": 2, "convs": 3, "channels": 8, "in_channels": 2}, 1,
                                "gaussian2d"),
    "modl-complex-column": ("modl", {"unrolls": 2, "convs": 3, "channels": 8, "in_channels": 2,
                                     "cg_iters": 3}, 1, "kdmri"),
    "modl-multicoil-smaps-grid": ("modl", {"unrolls": 2, "convs": 3, "channels": 8, "in_channels": 2,
                                           "cg_iters": 3}, 3, "gaussian2d"),
    # fastMRI-family models see the coils whole (sensitivity network and ACS count inside)
    "varnet-multicoil-column": ("varnet", VARNET, 4, "random"),
    "varnet-multicoil-grid": ("varnet", VARNET, 3, "gaussian2d"),
    "unet-magnitude-multicoil": ("unet", {"chans": 4, "num_pool_layers": 2}, 4, "random"),
    "unet-complex-channels": ("unet", {"chans": 4, "num_pool_layers": 2, "in_chans": 4, "out_chans": 4}, 2,
                              "equispaced_fraction"),
    "vdsr-real-column": ("vdsr", {"layers": 3, "channels": 8}, 1, "equispaced_fraction"),
    "chpnet-complex-column": ("chpnet", {"channels": 4, "levels": 2, "iterations": 2, "in_channels": 2},
                              1, "kdmri"),
}


def write_checkpoint(path: Path, name: str, kwargs: dict, data: DataConfig | None = None) -> Path:
    """A checkpoint of `name` with seeded weights, nudged so that no layer is the identity
    (CHPNet's last conv starts at zero)."""
    model = build_model(name, seed=0, **kwargs)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    meta = {} if data is None else data_meta(data)
    save_checkpoint(path, model_payload(model, name, kwargs, **meta))
    return path


def case_data(mask_kind: str, image_size: int = 128, coils: int = 1) -> DataConfig:
    """The data record of a training run with this mask and coil count (what an export reads)."""
    return DataConfig(image_size=image_size, mask=MaskConfig(kind=mask_kind, acceleration=4.0), coils=coils,
                      mode="complex" if coils > 1 else "real")
