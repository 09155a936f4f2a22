"""Teachers for `distill`: an mrdistill checkpoint (a path), or a foreign teacher (`TeacherConfig`):
a registered model whose weights come from elsewhere, e.g. fastMRI's released VarNet.

Weights are read with `torch.load(weights_only=True)` and checked against the model before use: a
missing or unexpected key or a shape that differs is one `MrdistillError` naming the first ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mrdistill.config import TeacherConfig
from mrdistill.config.run import TEACHER_FORMATS
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models import build_model
from mrdistill.models.foreign import weights_root
from mrdistill.train.checkpoint import load_checkpoint, load_model, read_torch_file

FORMATS = TEACHER_FORMATS
SHOWN = 3  # keys named in a mismatch message


def read_state_dict(path: str | Path, fmt: str) -> dict[str, Tensor]:
    """The tensors of a weights file. "fastmri": a plain `{name: tensor}` dict (fastMRI's
    `*_state_dict.pt`, any `module.state_dict()`), or a Lightning checkpoint, whose "state_dict" is
    taken with its one common leading module name removed ("varnet.cascades.0..." ->
    "cascades.0..."); "mrdistill": the "model" of an mrdistill checkpoint."""
    check_choice("distill.teacher.format", fmt, FORMATS)
    if fmt == "mrdistill":
        return load_checkpoint(path)["model"]
    path = Path(path)
    if not path.is_file():
        raise MrdistillError(f"teacher weights not found: {path}")
    obj = read_torch_file(path, "teacher weights")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = strip_common_prefix(obj["state_dict"])
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise MrdistillError(f"{path} is not a state_dict (a mapping of parameter names to tensors); "
                             f"for an mrdistill checkpoint use format: mrdistill")
    return obj


def strip_common_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the first dotted component when every key has the same one (a Lightning module's
    attribute name, e.g. "varnet."); otherwise return `state` unchanged."""
    heads = {k.split(".", 1)[0] for k in state}
    if len(heads) == 1 and all("." in k for k in state):
        return {k.split(".", 1)[1]: v for k, v in state.items()}
    return state


def check_state_dict(model: nn.Module, state: dict[str, Tensor], where: str,
                     kwargs_key: str = "distill.teacher.kwargs") -> None:
    """`MrdistillError` unless `state` has exactly the keys and shapes of `weights_root(model)`;
    `kwargs_key` names where the user sets the model's arguments (for the hint)."""
    expected = weights_root(model).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:SHOWN])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:SHOWN])})")
        raise MrdistillError(f"{where}: weights do not fit the model: keys {'; '.join(parts)}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise MrdistillError(f"{where}: weights do not fit the model: {key} has shape "
                                 f"{tuple(state[key].shape)} in the file, {tuple(value.shape)} in the "
                                 f"model (check {kwargs_key})")


def load_foreign_teacher(spec: TeacherConfig, device: str | torch.device = "cpu",
                         kwargs_key: str = "distill.teacher.kwargs") -> nn.Module:
    """Build `spec.model(**spec.kwargs)`, load and check `spec.weights`, eval mode on `device`.

    With format "mrdistill" and no `model`, the checkpoint's own model name and arguments are used.
    `kwargs_key` names the setting of the arguments in messages (`--set` on the command line).
    """
    check_choice("distill.teacher.format", spec.format, FORMATS)
    if not spec.weights:
        raise MrdistillError("distill.teacher.weights: give the teacher's weights file")
    if not spec.model:
        if spec.format == "mrdistill":
            return load_model(spec.weights, device)
        raise MrdistillError("distill.teacher.model: name the registered model the weights belong to "
                             "(`mrdistill list`), e.g. varnet")
    state = read_state_dict(spec.weights, spec.format)
    model = build_model(spec.model, seed=0, **spec.kwargs)  # seeded only to leave global RNG alone
    check_state_dict(model, state, spec.weights, kwargs_key)
    weights_root(model).load_state_dict(state)
    return model.to(device).eval()


def load_teacher(spec: str | TeacherConfig, device: str | torch.device = "cpu") -> nn.Module:
    """The teacher of `distill.teacher`: a checkpoint path or a foreign-teacher mapping."""
    if isinstance(spec, TeacherConfig):
        return load_foreign_teacher(spec, device)
    if not spec:
        raise MrdistillError("distill.teacher: no teacher checkpoint given")
    return load_model(spec, device)


def teacher_identity(spec: str | TeacherConfig) -> tuple[str, dict[str, Any]] | None:
    """(model name, kwargs) of the teacher, for saving a corrected copy; None when unknown."""
    if isinstance(spec, TeacherConfig):
        return (spec.model, dict(spec.kwargs)) if spec.model else None
    if spec and Path(spec).is_file():
        ckpt = load_checkpoint(spec)
        return ckpt["model_name"], ckpt["model_kwargs"]
    return None


def foreign_label(spec: TeacherConfig) -> str:
    """A table label for a foreign model: "varnet (file.pt)", or the file name alone."""
    name = Path(spec.weights).name
    return f"{spec.model} ({name})" if spec.model else name
