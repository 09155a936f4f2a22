"""The optimiser of a training stage (`optim.optimizer` and its parameters in `OptimConfig`).

One place builds it for `train`, every distillation stage, self-supervised training and SFT, so
the choice and its parameters mean the same everywhere. Its state dict is saved in `last.pt` and
restored on `--resume` like Adam's always was (train/state.py), so a resumed run stays bit-exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mrdistill.config import OptimConfig
from mrdistill.config.run import OPTIMIZERS
from mrdistill.errors import MrdistillError, check_choice


def build_optimizer(params: Iterable[Any], optim: OptimConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """`optim.optimizer` over `params` (tensors, or param groups that may carry their own "lr"),
    at `lr` (default `optim.lr`; a stage may set its own) with `optim.weight_decay`:

    adam:    Adam(betas, eps), weight decay added to the gradient (L2), as torch's Adam does
    adamw:   AdamW(betas, eps), weight decay decoupled from the gradient
    rmsprop: RMSprop(alpha, eps, momentum)
    sgd:     SGD(momentum, nesterov)
    """
    check_choice("optim.optimizer", optim.optimizer, OPTIMIZERS)
    lr = optim.lr if lr is None else lr
    common = {"lr": lr, "weight_decay": optim.weight_decay}
    if optim.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if optim.optimizer == "adam" else torch.optim.AdamW
        return cls(params, betas=tuple(optim.betas), eps=optim.eps, **common)
    if optim.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, alpha=optim.alpha, eps=optim.eps, momentum=optim.momentum,
                                   **common)
    if optim.nesterov and optim.momentum == 0:
        raise MrdistillError("optim.nesterov: Nesterov momentum needs optim.momentum > 0")
    return torch.optim.SGD(params, momentum=optim.momentum, nesterov=optim.nesterov, **common)
