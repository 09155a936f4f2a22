"""KD-loss registry. Every KD loss is an `nn.Module` with one signature:

    loss(student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor (scalar)

Losses that need intermediate features set `needs_features = True`; any learnable adapters they hold
belong to the student side (the optimizer and checkpoints see them; export drops them).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from torch import Tensor, nn

from mrdistill.errors import MrdistillError, check_choice

_KD: dict[str, type[nn.Module]] = {}
K = TypeVar("K", bound=type[nn.Module])


def register_kd(name: str) -> Callable[[K], K]:
    """Class decorator adding a KD loss to the registry under `name`."""

    def wrap(cls: K) -> K:
        if name in _KD:
            raise ValueError(f"KD loss {name!r} registered twice")
        _KD[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def list_kd() -> list[str]:
    """Names of all registered KD losses."""
    return sorted(_KD)


def kd_class(name: str) -> type[nn.Module]:
    """The class registered as KD loss `name` (its docstring: paper, formula, a YAML snippet)."""
    check_choice("KD method", name, list(_KD))
    return _KD[name]


def build_kd(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a registered KD loss; unknown names or arguments raise `MrdistillError`.

    >>> from mrdistill.distill import build_kd
    >>> at = build_kd("attention", p=2.0)
    >>> type(at).__name__, at.needs_features
    ('AttentionTransfer', True)
    >>> build_kd("attention", q=1)
    Traceback (most recent call last):
    mrdistill.errors.MrdistillError: KD method 'attention' has no option 'q'; valid: pairs, p, normalize, distance
    """
    cls = kd_class(name)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in valid:
            raise MrdistillError(f"KD method {name!r} has no option {key!r}; valid: {', '.join(valid)}")
    return cls(**kwargs)


def get_feature(features: dict[str, Tensor], key: str, side: str) -> Tensor:
    """features[key], or a `MrdistillError` naming the keys the model does produce."""
    if key not in features:
        valid = ", ".join(sorted(features)) or "(none: was the model run with return_features=True?)"
        raise MrdistillError(f"{side} has no feature {key!r}; valid: {valid}")
    return features[key]
