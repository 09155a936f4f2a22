"""Checkpoints: written atomically (temp file + rename), read with `weights_only=True`, checked
before use (tensor hash, finite weights, bounded model arguments: `checkpoint_integrity`).

A checkpoint is a plain dict: {"model_name", "model_kwargs", "model": state_dict,
"extra": state_dict of student-side training modules (KD adapters) or {}, "epoch", "metric", "config",
"data": the `DataConfig` the model was trained with, as a plain dict (mask included; `predict`
defaults to it)};
a training run's `last.pt` adds the "resume" section of `train.state` (optimizer, counters, RNG ...).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrdistill.atomic import atomic_path
from mrdistill.config import DataConfig, from_dict, to_dict
from mrdistill.errors import MrdistillError, describe_exception
from mrdistill.models import build_model
from mrdistill.train.checkpoint_integrity import check_finite_weights, check_model_kwargs, seal, verify_hash

CHECKPOINT_DIR = "checkpoints"


def state_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state_dict (what a checkpoint stores)."""
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    """True when every floating-point tensor of a state_dict is finite (no NaN or inf)."""
    return all(bool(torch.isfinite(v).all()) for v in state.values()
               if torch.is_floating_point(v) or torch.is_complex(v))


# torch's weights-only refusal leads with advice to load unsafely and ends with a link; the reason
# sits between them (torch 2.4-2.13 spell the parts differently).
_REFUSAL_START = re.compile(r"WeightsUnpickler error:|Do it only if you got the file from a trusted source\.")
_REFUSAL_END = "Check the documentation"
_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", re.IGNORECASE)


def weights_only_refusal(message: str) -> str | None:
    """The reason inside a `torch.load(weights_only=True)` refusal, e.g. "unsupported GLOBAL
    posix.system" or "Unsupported operand 149"; None when `message` is no such refusal."""
    if "Weights only load failed" not in message and "WeightsUnpickler" not in message:
        return None
    parts = _REFUSAL_START.split(message)
    detail = parts[-1].split(_REFUSAL_END, 1)[0] if len(parts) > 1 else ""
    detail = " ".join(detail.replace("WeightsUnpickler error:", " ").split())
    found = _GLOBAL.search(detail)
    if found:
        return f"unsupported GLOBAL {found[1]}"
    return detail.rstrip(".")[:160] or "an instruction it does not allow"


def _preview(head: bytes) -> str:
    """The first bytes of a file as words: quoted text when they are printable, else hex."""
    text = head[:24].decode("ascii", errors="replace")
    if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"text {' '.join(text.split())[:24]!r}"
    return f"bytes {head[:8].hex(' ')}"


def torch_load_problem(exc: BaseException, path: str | Path) -> str:
    """Why `torch.load(path, weights_only=True)` failed, in words, from the exception and the
    file's first bytes: empty, not a PyTorch file (what it starts with), truncated or damaged, or a
    refused pickle with torch's reason ("unsupported GLOBAL posix.system"). Never torch's advice to
    load unsafely."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as err:
        return describe_exception(err)
    if not head:
        return "the file is empty"
    zipped, pickled = head.startswith(b"PK\x03\x04"), head[:1] == b"\x80"  # torch.save's formats
    if not (zipped or pickled):
        return f"not a PyTorch checkpoint (the file starts with {_preview(head)})"
    refusal = weights_only_refusal(str(exc))
    if refusal is not None:
        return (f"refused to unpickle it ({refusal}): a checkpoint holds only tensors and plain "
                f"values; nothing in the file was run")
    if zipped and not zipfile.is_zipfile(path):
        return "the file is truncated or damaged (its zip archive has no end record)"
    if pickled and (isinstance(exc, EOFError) or "truncated" in str(exc)):
        return "the file is truncated (its pickle data end early)"
    kind = "a zip archive" if zipped else "a pickle"
    return f"{kind} that is not a readable PyTorch checkpoint ({describe_exception(exc)})"


def read_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)`; any failure is one
    `MrdistillError` "cannot read <what> <path>: <torch_load_problem>" (torch's own warnings about
    the file, e.g. an unusual pickle protocol, are not shown: the refusal says what matters)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise MrdistillError(f"cannot read {what} {path}: {torch_load_problem(exc, path)}") from None


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, then atomically rename over `path`."""
    with atomic_path(path) as tmp:
        torch.save(seal(payload), tmp)  # records the tensors' SHA-256


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; a missing or unreadable file raises `MrdistillError`."""
    path = Path(path)
    if not path.is_file():
        raise MrdistillError(f"checkpoint not found: {path}")
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or "model_name" not in ckpt or "model" not in ckpt:
        raise MrdistillError(f"{path} is not an mrdistill checkpoint")
    verify_hash(ckpt, path)
    check_finite_weights(ckpt, path)
    return ckpt


def model_payload(model: nn.Module, model_name: str, model_kwargs: dict[str, Any],
                  extra: nn.Module | None = None, **meta: Any) -> dict[str, Any]:
    """The dict `save_checkpoint` writes for `model` (and its student-side `extra` modules)."""
    return {
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs),
        "model": state_to_cpu(model.state_dict()),
        "extra": {} if extra is None else state_to_cpu(extra.state_dict()),
        **meta,
    }


def data_meta(data: DataConfig) -> dict[str, Any]:
    """The checkpoint entries (`fit(meta=...)`) recording the data and mask config of a training run."""
    return {"data": to_dict(data)}


def recorded_data(ckpt: dict[str, Any], path: str | Path) -> DataConfig | None:
    """The `DataConfig` a checkpoint's model was trained with; None for checkpoints that predate
    the record (or were written outside a training run)."""
    raw = ckpt.get("data")
    return None if raw is None else from_dict(DataConfig, raw, f"{path}: data")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the registered model stored in a checkpoint, weights loaded, in eval mode."""
    return model_from_checkpoint(load_checkpoint(path), path, device)


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path,
                          device: str | torch.device = "cpu") -> nn.Module:
    """`load_model` for a checkpoint already read by `load_checkpoint` (path: for messages)."""
    # Seeded (inside a forked RNG) only so that building never consumes global RNG state; every
    # initial weight is overwritten by the checkpoint's.
    check_model_kwargs(ckpt["model_name"], ckpt["model_kwargs"], path)  # before any allocation
    model = build_model(ckpt["model_name"], seed=0, **ckpt["model_kwargs"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise MrdistillError(f"{path}: weights do not fit {ckpt['model_name']} "
                             f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()
