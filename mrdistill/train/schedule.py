"""The learning-rate schedule of one `fit` (`optim.scheduler`, `optim.warmup_epochs`), stepped once
per epoch after validation:

- "step": StepLR, lr x `gamma` every `step_size` epochs;
- "plateau": ReduceLROnPlateau on the validation metric (`val_metric`; mode from whether lower is
  better), lr x `gamma` after `patience` epochs without improvement (the adaptive-KD paper's
  schedule on validation SSIM);
- "cosine": CosineAnnealingLR from lr to 0 over the epochs after the warm-up.

With `warmup_epochs` W > 0, epoch e < W (0-based) runs at lr x (e + 1) / W, and the main schedule
starts after it. `EpochScheduler` has `state_dict`/`load_state_dict`, so resuming restores it.
"""

from __future__ import annotations

from typing import Any

import torch

from mrdistill.config import OptimConfig
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.train.selection import LOWER_IS_BETTER

SCHEDULERS = ("step", "plateau", "cosine")


def check_schedule(optim: OptimConfig) -> None:
    """One clear line for a bad schedule setting (the key named)."""
    check_choice("optim.scheduler", optim.scheduler, SCHEDULERS)
    if optim.warmup_epochs < 0 or optim.patience < 0:
        raise MrdistillError(f"optim.warmup_epochs and optim.patience must be >= 0, got "
                             f"{optim.warmup_epochs} and {optim.patience}")


def warmup_factor(epoch: int, warmup: int) -> float:
    """lr multiplier of 0-based `epoch` during a linear warm-up of `warmup` epochs (1 after it)."""
    return 1.0 if epoch >= warmup else (epoch + 1) / warmup


class EpochScheduler:
    """Linear warm-up, then a torch scheduler; `step(metric)` once per epoch."""

    def __init__(self, opt: torch.optim.Optimizer, optim: OptimConfig, epochs: int,
                 val_metric: str) -> None:
        check_schedule(optim)
        self.opt, self.kind, self.warmup = opt, optim.scheduler, optim.warmup_epochs
        self.epoch = 0
        self.base = [group["lr"] for group in opt.param_groups]
        self.main: Any
        if self.kind == "plateau":
            mode = "min" if val_metric in LOWER_IS_BETTER else "max"
            self.main = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=mode, factor=optim.gamma, patience=optim.patience)
        elif self.kind == "cosine":
            self.main = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=max(1, epochs - self.warmup))
        else:
            self.main = torch.optim.lr_scheduler.StepLR(opt, step_size=optim.step_size,
                                                        gamma=optim.gamma)
        self._warm()

    def _warm(self) -> None:
        if self.epoch <= self.warmup and self.warmup:
            factor = warmup_factor(self.epoch, self.warmup)
            for group, base in zip(self.opt.param_groups, self.base):
                group["lr"] = base * factor

    def step(self, metric: float) -> None:
        """End of an epoch whose validation score was `metric`."""
        self.epoch += 1
        if self.epoch <= self.warmup:
            self._warm()
        elif self.kind == "plateau":
            self.main.step(metric)
        else:
            self.main.step()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "base": list(self.base), "main": self.main.state_dict(),
                "lr": [group["lr"] for group in self.opt.param_groups]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the schedule and the lr it had set (building a scheduler sets the warm-up lr)."""
        self.epoch, self.base = int(state["epoch"]), list(state["base"])
        self.main.load_state_dict(state["main"])
        for group, lr in zip(self.opt.param_groups, state["lr"]):
            group["lr"] = lr
