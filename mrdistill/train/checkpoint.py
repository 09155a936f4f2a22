"""Checkpoints: written atomically (temp file + rename), read with `weights_only=True`, checked
before use (tensor hash, finite weights, bounded model arguments: `checkpoint_integrity`).

A checkpoint is a plain dict: {"model_name", "model_kwargs", "model": state_dict,
"extra": state_dict of student-side training modules (KD adapters) or {}, "epoch", "metric", "config",
"data": the `DataConfig` the model was trained with, as a plain dict (mask included; `predict`
defaults to it)};
a training run's `last.pt` adds the "resume" section of `train.state` (optimizer, counters, RNG ...).
"""

from __future__ import annotations

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


def torch_load_problem(exc: BaseException) -> str:
    """Why `torch.load(..., weights_only=True)` refused a file, in words: its weights-only
    unpickler's own reason (e.g. "Unsupported operand 110" for bytes that are no checkpoint,
    "Unsupported global: GLOBAL os.system ..." for code in a pickle) instead of the advice to load
    unsafely that leads its message; other errors as `describe_exception` gives them."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return f"not a plain-weights PyTorch file ({' '.join(detail.split())[:200]})"
    return describe_exception(exc)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, then atomically rename over `path`."""
    with atomic_path(path) as tmp:
        torch.save(seal(payload), tmp)  # records the tensors' SHA-256


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; a missing or unreadable file raises `MrdistillError`."""
    path = Path(path)
    if not path.is_file():
        raise MrdistillError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise MrdistillError(f"cannot read checkpoint {path}: {torch_load_problem(exc)}") from None
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
