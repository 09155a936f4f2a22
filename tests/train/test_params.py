"""`train.params`: which parameters a stage trains, and the optimiser built over them."""

from __future__ import annotations

import torch
from torch import nn

from mrdistill.config import OptimConfig
from mrdistill.train.params import make_optimizer, trained_params


class _Objective(nn.Module):
    """An objective with a trained adapter and a learning teacher kept out of `parameters()`."""

    def __init__(self) -> None:
        super().__init__()
        self.adapter = nn.Linear(2, 2)
        self.frozen = nn.Linear(2, 2).requires_grad_(False)
        self._teacher = [nn.Linear(3, 3)]  # a list: not a submodule

    def extra_param_groups(self, lr: float) -> list[dict]:
        return [{"params": list(self._teacher[0].parameters()), "lr": lr * 0.1}]


def test_trained_params_and_groups() -> None:
    model, objective = nn.Conv2d(1, 1, 3), _Objective()
    model.bias.requires_grad_(False)
    trained = trained_params(model, objective, lr=0.01)
    first = [model.weight, *objective.adapter.parameters()]
    teacher = list(objective._teacher[0].parameters())
    assert [id(p) for p in trained.groups[0]["params"]] == [id(p) for p in first]
    assert trained.groups[1]["lr"] == 0.001
    assert [id(p) for p in trained.params] == [id(p) for p in first + teacher]
    assert [id(p) for p in trained.unwrapped] == [id(p) for p in teacher]  # DDP does not see them
    plain = trained_params(model, nn.Module(), lr=0.01)
    assert len(plain.groups) == 1 and plain.unwrapped == []


def test_make_optimizer_uses_the_stage_lr_and_weight_decay() -> None:
    model, objective = nn.Linear(2, 2), _Objective()
    opt = make_optimizer(trained_params(model, objective, 0.02), 0.02, OptimConfig(weight_decay=0.5))
    assert isinstance(opt, torch.optim.Adam)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.002]
    assert all(g["weight_decay"] == 0.5 for g in opt.param_groups)
