"""What one `fit` call trains (`StagePlan`), and the objects that train it (`StageParts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mrdistill.config import DataConfig, OptimConfig, RunConfig
from mrdistill.train.checkpoint import data_meta
from mrdistill.train.precision import Precision


@dataclass
class StagePlan:
    """One training stage (`train.loop.fit`).

    optim: the optimiser config (`epochs`/`lr`/`max_steps` below override it for this stage);
    model_name, model_kwargs: how the checkpoint rebuilds the model; seed: the data order;
    val_metric: the validation metric ("psnr", ...); device; stage: the stage's name in the run
    ("train", "stage1", ...); select: the epoch it keeps (`train.selection`: "val_metric",
    "val_objective" or "last"); data: the loading options (workers; None: defaults); progress: a
    progress bar; meta: extra checkpoint entries (`checkpoint.data_meta`).
    """

    optim: OptimConfig
    model_name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    val_metric: str = "psnr"
    device: str | torch.device = "cpu"
    epochs: int | None = None
    lr: float | None = None
    max_steps: int | None = None
    stage: str = "train"
    select: str = "val_metric"
    data: DataConfig | None = None
    progress: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def stage_epochs(self) -> int:
        """This stage's epochs: `epochs`, else `optim.epochs`."""
        return self.optim.epochs if self.epochs is None else self.epochs

    @property
    def stage_lr(self) -> float:
        """This stage's learning rate: `lr`, else `optim.lr`."""
        return self.optim.lr if self.lr is None else self.lr

    @property
    def stage_max_steps(self) -> int | None:
        """This stage's step budget: `max_steps`, else `optim.max_steps` (None: epochs only)."""
        return self.optim.max_steps if self.max_steps is None else self.max_steps


def run_plan(cfg: RunConfig, stage: str, **overrides: Any) -> StagePlan:
    """The plan of stage `stage` of the run `cfg` describes (its optimiser, model, seed, metric,
    device, data and progress; the data config recorded in the checkpoints); `overrides` set
    any other field (a stage's epochs, a model other than `cfg.model`, ...)."""
    fields = {"model_name": cfg.model.name, "model_kwargs": cfg.model.kwargs, "seed": cfg.seed,
              "val_metric": cfg.val_metric, "device": cfg.device, "data": cfg.data,
              "progress": cfg.progress, "meta": data_meta(cfg.data), **overrides}
    return StagePlan(cfg.optim, stage=stage, **fields)


@dataclass
class StageParts:
    """What a stage's checkpoint saves and a resumed stage loads back: the model, the objective
    (its student-side modules and hooks), the optimiser, the lr schedule and the precision's
    gradient scaler."""

    model: nn.Module
    objective: nn.Module
    opt: torch.optim.Optimizer
    sched: Any  # train.schedule.EpochScheduler
    amp: Precision
