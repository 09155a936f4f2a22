"""Checks that make a checkpoint safe to use: tensor hash, finite weights, bounded model size.

- `seal(payload)` adds {"integrity": {"sha256": ...}}: a SHA-256 over every tensor in the payload
  (walked in sorted key order; each tensor's key path, dtype, shape and bytes). `verify_hash` at
  load recomputes it: flipped bytes in the weights are refused, naming the file. Checkpoints
  written before mrdistill recorded a hash load without this check, with a warning (refusing
  them would strand every model trained so far; the other checks below still apply).
- `check_finite_weights`: NaN/Inf weights (a diverged or damaged model) are refused at load.
- `check_model_kwargs`: before the model is built for real, `model_kwargs` must be plain values
  (numbers, strings, booleans, lists of them) of the types the constructor's signature names,
  whole numbers in [0, `MAX_INT_KWARG`], and the model, built first in a throw-away worker
  process under a time limit and a memory cap (`BUILD_MEMORY_BYTES`), at most `MAX_PARAMETERS`
  parameters. A 1 KB checkpoint asking for 200,000 cascades is refused in milliseconds, one
  asking for 5,000 cascades of 5,000 channels when the worker reaches the memory cap.
"""

from __future__ import annotations

import functools
import hashlib
import json
import resource
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from mrdistill.config.checks import MAX_MODEL_INT
from mrdistill.errors import MrdistillError, describe_exception
from mrdistill.models.registry import build_model, list_models, model_parameters
from mrdistill.timelimit import TimeLimitExceeded, iter_time_limited

INTEGRITY_KEY = "integrity"
MAX_INT_KWARG = MAX_MODEL_INT  # any whole-number model argument (channels, cascades, depth, ...)
MAX_PARAMETERS = 250_000_000  # 1 GB of float32 weights; the largest fastMRI models have ~30 M
BUILD_MEMORY_BYTES = 2 << 30  # what the trial build may allocate
BUILD_TIME_LIMIT = 30.0  # seconds the trial build may take


def _tensors(value: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(key path, tensor) of every tensor inside nested dicts/lists, in a fixed order."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            if not (prefix == "" and key == INTEGRITY_KEY):
                yield from _tensors(value[key], f"{prefix}/{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{prefix}/{i}")


def tensor_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over every tensor of a checkpoint payload (see the module docstring)."""
    h = hashlib.sha256()
    for key, tensor in _tensors(payload):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def seal(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `payload` with its tensor hash recorded."""
    return {**payload, INTEGRITY_KEY: {"sha256": tensor_digest(payload)}}


def verify_hash(ckpt: Mapping[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose tensors do not match the hash recorded at saving."""
    record = ckpt.get(INTEGRITY_KEY)
    if record is None:
        warnings.warn(f"{path}: checkpoint has no integrity hash (written by an older mrdistill); "
                      f"loaded without the corruption check", stacklevel=3)
        return
    if not isinstance(record, Mapping) or not isinstance(record.get("sha256"), str):
        raise MrdistillError(f"{path}: damaged checkpoint (its integrity record is malformed)")
    if tensor_digest(ckpt) != record["sha256"]:
        raise MrdistillError(f"{path}: corrupted checkpoint: its tensors do not match the SHA-256 "
                             f"recorded when it was saved (damaged copy or disk?)")


def check_finite_weights(ckpt: Mapping[str, Any], path: str | Path) -> None:
    """Refuse NaN/Inf in the model's (and its student-side modules') weights, naming one."""
    for part in ("model", "extra"):
        for key, tensor in _tensors(ckpt.get(part) or {}):
            if tensor.is_floating_point() or tensor.is_complex():
                if not torch.isfinite(tensor).all():
                    raise MrdistillError(f"{path}: weight {part}{key.replace('/', '.', 1).replace('/', '.')} "
                                         f"holds NaN or Inf (a diverged or damaged model); not loaded")


def _plain(value: Any) -> bool:
    """Numbers, strings, booleans, None, and lists or string-keyed mappings of them (an
    ensemble's member_kwargs)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return True
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


def _check_types(name: str, kwargs: Mapping[str, Any], path: str | Path) -> None:
    """Plain values, of the constructor's annotated type where it names int/float/bool."""
    params = model_parameters(name)
    for key, value in kwargs.items():
        where = f"{path}: model_kwargs.{key}"
        if not _plain(value):
            raise MrdistillError(f"{where} must be a number, string, boolean, list or mapping of "
                                 f"them, got {type(value).__name__}")
        if key not in params:
            continue  # build_model names the valid arguments
        hint = str(params[key].annotation).replace(" ", "")
        ints = [v for v in (value if isinstance(value, (list, tuple)) else [value])
                if isinstance(v, int) and not isinstance(v, bool)]
        if hint == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise MrdistillError(f"{where} must be a whole number, got {value!r}")
        if hint == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise MrdistillError(f"{where} must be a number, got {value!r}")
        if hint == "bool" and not isinstance(value, bool):
            raise MrdistillError(f"{where} must be true or false, got {value!r}")
        if any(not 0 <= v <= MAX_INT_KWARG for v in ints):
            raise MrdistillError(f"{where} = {value!r} is out of range (whole numbers from 0 to "
                                 f"{MAX_INT_KWARG}): a damaged or hostile checkpoint?")


def _address_space_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _built_parameters(spec: tuple[str, dict[str, Any]]) -> int:
    """Parameter count of the model built in this (forked, throw-away) worker, with its memory
    capped at `BUILD_MEMORY_BYTES` beyond what the process already holds. (Building on the meta
    device would need no memory, but some layers' set-up code is very slow there.)"""
    name, kwargs = spec
    now = _address_space_kb()
    if now is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = now * 1024 + BUILD_MEMORY_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        model = build_model(name, seed=0, **kwargs)
    except MrdistillError:
        raise
    except MemoryError:
        raise MrdistillError(f"building it needs more than {BUILD_MEMORY_BYTES >> 30} GB") from None
    except Exception as exc:  # noqa: BLE001 - constructors raise TypeError/ValueError/... on bad values
        text = describe_exception(exc)
        if "alloc" in text.lower():  # torch's allocator: "can't allocate memory"
            text = f"building it needs more than {BUILD_MEMORY_BYTES >> 30} GB"
        raise MrdistillError(text) from None
    return int(sum(p.numel() for p in model.parameters()))


@functools.lru_cache(maxsize=64)
def _trial_build(name: str, kwargs_json: str) -> int | MrdistillError:
    """The trial build's outcome, remembered per architecture (loading many checkpoints of one
    model, as evaluate and study do, pays for one trial)."""
    (result,) = list(iter_time_limited(_built_parameters, [(name, json.loads(kwargs_json))],
                                       BUILD_TIME_LIMIT, describe=lambda _: name))
    return result


def check_model_kwargs(name: Any, kwargs: Any, path: str | Path) -> None:
    """Refuse model arguments that are malformed or ask for a model above `MAX_PARAMETERS`,
    before any weight memory is allocated (see the module docstring)."""
    if not isinstance(name, str) or name not in list_models():
        raise MrdistillError(f"{path}: unknown model_name {name!r}; valid: {', '.join(list_models())}")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise MrdistillError(f"{path}: model_kwargs must be a mapping of argument names to values")
    _check_types(name, kwargs, path)
    result = _trial_build(name, json.dumps(kwargs, sort_keys=True))
    if isinstance(result, TimeLimitExceeded):
        raise MrdistillError(f"{path}: model_kwargs ask for a {name} that takes more than "
                             f"{BUILD_TIME_LIMIT:g} s to build (far too large); not built")
    if isinstance(result, MrdistillError):
        text = str(result)
        raise MrdistillError(text if text.startswith(str(path)) else f"{path}: model_kwargs do not "
                             f"build a {name} ({text})") from None
    if result > MAX_PARAMETERS:
        raise MrdistillError(f"{path}: model_kwargs ask for a {name} with {result:,} parameters, "
                             f"above the limit of {MAX_PARAMETERS:,}; not built")
