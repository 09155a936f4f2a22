"""Reconstruction models; importing this package registers them all."""

from mrdistill.models import dccnn  # noqa: F401  (registers "dccnn")
from mrdistill.models import chpnet, swinir, vdsr  # noqa: F401  (registers "chpnet", "swinir", "vdsr")
from mrdistill.models import ensemble, modl  # noqa: F401  (registers "ensemble", "modl")
from mrdistill.models import unet, varnet  # noqa: F401  (registers "unet", "varnet": fastMRI-compatible)
from mrdistill.models.base import ReconOutput
from mrdistill.models.registry import build_model, count_parameters, list_models, register_model

__all__ = ["ReconOutput", "build_model", "count_parameters", "list_models", "register_model"]
