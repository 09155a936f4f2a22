"""Model registry: `@register_model("name")`, `build_model(name, **kwargs)`, `list_models()`."""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from mrdistill.errors import MrdistillError, check_choice

_MODELS: dict[str, Callable[..., nn.Module]] = {}
M = TypeVar("M", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[M], M]:
    """Decorator adding a model to the registry under `name`: a model class, or a builder function
    `(**kwargs) -> nn.Module` for a module that is not mrdistill's (docs/teachers.md)."""

    def wrap(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def list_models() -> list[str]:
    """Names of all registered models."""
    return sorted(_MODELS)


def build_model(name: str, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate a registered model; unknown names or arguments raise `MrdistillError`.

    With `seed`, parameters are initialised from that seed without changing global RNG state.
    """
    check_choice("model", name, list(_MODELS))
    cls = _MODELS[name]
    params = inspect.signature(cls.__init__ if isinstance(cls, type) else cls).parameters
    valid = [p for p in params if p != "self"]
    for key in kwargs:
        if key not in valid:
            raise MrdistillError(f"model {name!r} has no argument {key!r}; valid: {', '.join(valid)}")
    if seed is None:
        return cls(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (frozen ones too: a frozen teacher still has its size)."""
    return sum(p.numel() for p in model.parameters())
