"""Devices: `auto`, `cpu`, `cuda` or `cuda:N` -> a `torch.device`, checked before anything is written."""

from __future__ import annotations

import re

import torch

from mrdistill.errors import MrdistillError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def resolve_device(spec: str | torch.device) -> torch.device:
    """The device `spec` names; `auto` is the first CUDA device when there is one, else the CPU.

    Asking for CUDA where there is none, or for a GPU index that does not exist, raises
    `MrdistillError` (one line naming the device and what is available).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise MrdistillError(f"unknown device {spec!r}; valid: {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise MrdistillError(f"device {spec!r} asked for, but this machine has no CUDA device "
                             f"(torch {torch.__version__}); use --device cpu or auto")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise MrdistillError(f"device {spec!r} asked for, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return torch.device(f"cuda:{index}")
