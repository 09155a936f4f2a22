"""Reconstruction models; importing this package registers them all."""

from mrdistill.models import dccnn  # noqa: F401  (registers "dccnn")
from mrdistill.models.base import ReconOutput
from mrdistill.models.registry import build_model, count_parameters, list_models, register_model

__all__ = ["ReconOutput", "build_model", "count_parameters", "list_models", "register_model"]
