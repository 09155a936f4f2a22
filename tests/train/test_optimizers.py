"""train/optimizers.py: optim.optimizer and its parameters; a killed run resumes bit-exact with
every optimiser (and task loss)."""

from __future__ import annotations

import pytest
import torch

from mrdistill.config import OptimConfig, load_run_config
from mrdistill.errors import MrdistillError
from mrdistill.train.optimizers import build_optimizer
from tests.conftest import run_cli
from tests.train.test_resume import BASE, assert_same_run, killed, write_config


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3))]


def test_each_optimizer_gets_its_parameters():
    adam = build_optimizer(_params(), OptimConfig(betas=[0.8, 0.99], eps=1e-6, weight_decay=0.1), lr=0.5)
    assert type(adam) is torch.optim.Adam
    want = {"lr": 0.5, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}
    assert {k: adam.defaults[k] for k in want} == want
    adamw = build_optimizer(_params(), OptimConfig(optimizer="adamw", weight_decay=0.01))
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0.01
    assert adamw.defaults["lr"] == OptimConfig().lr
    rms = build_optimizer(_params(), OptimConfig(optimizer="rmsprop", alpha=0.9, momentum=0.0))
    assert type(rms) is torch.optim.RMSprop and rms.defaults["alpha"] == 0.9 and rms.defaults["momentum"] == 0
    sgd = build_optimizer([{"params": _params()}, {"params": _params(), "lr": 0.01}],
                          OptimConfig(optimizer="sgd", nesterov=True), lr=0.1)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"]
    assert [g["lr"] for g in sgd.param_groups] == [0.1, 0.01]  # a group's own lr is kept


def test_bad_values_are_one_line_naming_the_key():
    for override, key in (("optim.optimizer=lion", "optim.optimizer"), ("optim.betas=[0.9]", "optim.betas"),
                          ("optim.momentum=1.0", "optim.momentum"), ("optim.eps=0", "optim.eps"),
                          ("optim.alpha=1", "optim.alpha"), ("optim.loss=huber", "optim.loss")):
        with pytest.raises(MrdistillError, match=key):
            load_run_config(None, [override])
    with pytest.raises(MrdistillError, match="optim.nesterov"):
        build_optimizer(_params(), OptimConfig(optimizer="sgd", momentum=0.0, nesterov=True))


@pytest.mark.parametrize("optim", [{"optimizer": "adamw", "weight_decay": 0.01, "loss": "ssim"},
                                   {"optimizer": "rmsprop", "momentum": 0.5, "loss": "mse"},
                                   {"optimizer": "sgd", "nesterov": True, "lr": 0.05,
                                    "loss": {"ssim": 0.84, "l1": 0.16}}])
def test_killed_run_resumes_bit_identical_with_every_optimizer(tmp_path, capsys, optim):
    extra = {"optim": {**BASE["optim"], "epochs": 2, **optim}}
    (tmp_path / "ref").mkdir()
    ref = write_config(tmp_path / "ref", "train", **extra)
    assert run_cli(["train", "--config", ref], capsys)[0] == 0
    cfg = write_config(tmp_path, "train", **extra)
    killed("step:7", ["train", "--config", str(cfg)])  # mid-epoch 2; last.pt from step 6
    last = torch.load(tmp_path / "runs" / "train" / "checkpoints" / "last.pt", weights_only=True)
    assert last["resume"]["optimizer"]["state"]  # the optimiser's own state was saved
    code, _, err = run_cli(["train", "--config", cfg, "--resume"], capsys)
    assert code == 0, err
    assert_same_run(tmp_path / "ref" / "runs" / "train", tmp_path / "runs" / "train")
