"""Initialising a student from its teacher's weights (layer selection, as DistilBERT does).

A shallow DC-CNN student cascade (conv1 .. convS) takes the teacher cascade's first conv, its last
conv, and evenly spaced middle convs; every copied tensor must have the same shape in both models.
Under a short training budget the student then starts from the teacher's filters instead of noise.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from mrdistill.errors import MrdistillError

_CONV = re.compile(r"^cascades\.(\d+)\.convs\.(\d+)\.(weight|bias)$")


def layer_map(student_convs: int, teacher_convs: int) -> list[int]:
    """Teacher conv index (0-based) for each student conv: first->first, last->last, middles
    evenly spaced over the teacher's middle convs."""
    if student_convs > teacher_convs:
        raise MrdistillError(f"a student with {student_convs} convs per cascade cannot take layers "
                             f"from a teacher with {teacher_convs}")
    if student_convs == 1:
        return [0]
    return np.linspace(0, teacher_convs - 1, student_convs).round().astype(int).tolist()


def conv_counts(state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(cascades, convs per cascade) of a DC-CNN state dict."""
    idx = [(int(m[1]), int(m[2])) for k in state if (m := _CONV.match(k))]
    if not idx:
        raise MrdistillError("teacher-layer initialisation needs DC-CNN teacher and student")
    return max(i for i, _ in idx) + 1, max(j for _, j in idx) + 1


@torch.no_grad()
def init_from_teacher(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy selected teacher conv weights into `student` in place; returns the copied keys."""
    s_state, t_state = student.state_dict(), teacher.state_dict()
    s_casc, s_convs = conv_counts(s_state)
    t_casc, t_convs = conv_counts(t_state)
    if s_casc != t_casc:
        raise MrdistillError(f"teacher-layer initialisation needs equal cascades ({s_casc} vs {t_casc})")
    mapping = layer_map(s_convs, t_convs)
    copied = []
    for key, value in s_state.items():
        m = _CONV.match(key)
        if not m:
            continue
        source = f"cascades.{m[1]}.convs.{mapping[int(m[2])]}.{m[3]}"
        if t_state[source].shape != value.shape:
            raise MrdistillError(f"cannot initialise {key} {tuple(value.shape)} from teacher "
                                 f"{source} {tuple(t_state[source].shape)}")
        value.copy_(t_state[source])
        copied.append(key)
    return copied
