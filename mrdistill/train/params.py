"""Optimiser construction: which parameters a stage trains, in which groups, and the optimiser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mrdistill.config import OptimConfig
from mrdistill.train.optimizers import build_optimizer


@dataclass
class TrainedParams:
    """groups: the optimiser's parameter groups (the first: model + objective); params: every
    trained parameter (gradient checks, clipping); unwrapped: those DDP does not see (trained
    besides the student, e.g. a teacher that learns while teaching), averaged by hand."""

    groups: list[dict[str, Any]]
    params: list[nn.Parameter]
    unwrapped: list[nn.Parameter]


def trained_params(model: nn.Module, objective: nn.Module, lr: float) -> TrainedParams:
    """The parameters of `model` and `objective` that require gradients, plus the groups the
    objective trains outside its `parameters()` at their own lr (`objective.extra_param_groups(lr)`,
    e.g. `distill.teacher_correction`)."""
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": params}]
    extra_groups = getattr(objective, "extra_param_groups", None)
    if callable(extra_groups):
        groups += extra_groups(lr)
    extra = [p for g in groups[1:] for p in g["params"]]
    return TrainedParams(groups, params + extra, extra)


def make_optimizer(trained: TrainedParams, lr: float, optim: OptimConfig) -> torch.optim.Optimizer:
    """The stage's optimiser (`optim.optimizer`, `train.optimizers`) over `trained.groups` at `lr`."""
    return build_optimizer(trained.groups, optim, lr)
