"""Model registry: `@register_model("name")`, `build_model(name, **kwargs)`, `list_models()`."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from mrdistill.config.checks import FINITE, MODEL_INT, fail
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


def registered_name(model: nn.Module) -> str:
    """The registry name of `model`'s class ("dccnn"), or the class name for a module that was not
    registered (a plugin builder's product)."""
    return getattr(type(model), "registry_name", type(model).__name__)


def list_models() -> list[str]:
    """Names of all registered models."""
    return sorted(_MODELS)


def model_class(name: str) -> Callable[..., nn.Module]:
    """What model `name` was registered as: its class, or its builder function."""
    check_choice("model", name, list(_MODELS))
    return _MODELS[name]


def _check_argument(tp: Any, value: Any, where: str) -> None:
    """One constructor argument against its annotation: ints are counts in [1, MAX_MODEL_INT], floats finite."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    if value is None:
        if type(None) not in options:
            raise fail(where, "a value", value)
        return
    for option in options:
        base = typing.get_origin(option) or option
        if base is bool and isinstance(value, bool):
            return
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            if not MODEL_INT.ok(value):
                raise fail(where, MODEL_INT.expected, value)
            return
        if base is float and FINITE.ok(value):
            return
        if base in (str, dict, list) and isinstance(value, base):
            return
        if base is Any:
            return
    words = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string",
             dict: "a mapping", list: "a list", type(None): "null"}
    raise fail(where, " or ".join(words.get(typing.get_origin(o) or o, str(o)) for o in options), value)


def _constructor(name: str) -> Callable[..., Any]:
    """The callable whose signature defines model `name`'s arguments: a registered class's
    `__init__` or a registered builder function."""
    cls = _MODELS[name]
    return cls.__init__ if isinstance(cls, type) else cls


def model_parameters(name: str) -> dict[str, inspect.Parameter]:
    """Constructor arguments of registered model `name` (without `self`), by name."""
    return {p: v for p, v in inspect.signature(_constructor(name)).parameters.items() if p != "self"}


def check_model_kwargs(name: str, kwargs: Any, where: str = "model.kwargs") -> None:
    """Check `kwargs` against the signature of model `name` before anything is built: unknown
    arguments, wrong types (a list or string for a count), non-positive counts and non-finite
    numbers raise `MrdistillError` naming `where.<argument>`."""
    check_choice("model", name, list(_MODELS))
    if not isinstance(kwargs, dict):
        raise fail(where, "a mapping of constructor arguments", kwargs)
    params = model_parameters(name)
    hints = typing.get_type_hints(_constructor(name))
    for key, value in kwargs.items():
        if key not in params:
            raise MrdistillError(f"{where}: model {name!r} has no argument {key!r}; "
                                 f"valid: {', '.join(params)}")
        if key in hints:
            _check_argument(hints[key], value, f"{where}.{key}")


def build_model(name: str, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate a registered model; unknown names or bad arguments raise `MrdistillError`
    (see `check_model_kwargs`).

    With `seed`, parameters are initialised from that seed without changing global RNG state.

    >>> import torch
    >>> from mrdistill.models import build_model
    >>> model = build_model("dccnn", cascades=2, convs=3, channels=8, seed=0)
    >>> kspace = torch.randn(1, 1, 32, 32, dtype=torch.complex64)
    >>> out = model(kspace, torch.ones(1, 1, 1, 32), return_features=True)
    >>> out.image.shape, sorted(out.features)[:3]
    (torch.Size([1, 1, 32, 32]), ['cascade1.conv1', 'cascade1.conv2', 'cascade1.conv3'])
    >>> build_model("dccnn", convs=0)
    Traceback (most recent call last):
    mrdistill.errors.MrdistillError: dccnn model.convs: expected an integer in [1, 10000], got 0
    """
    check_model_kwargs(name, kwargs, f"{name} model")
    cls = _MODELS[name]
    if seed is None:
        return cls(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (frozen ones too: a frozen teacher still has its size)."""
    return sum(p.numel() for p in model.parameters())
