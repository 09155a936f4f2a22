"""Divergence guard: a non-finite loss, gradient or validation score stops the run (exit 2, one
line naming step, stage and the last good checkpoint); checkpoints never hold a diverged model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mrdistill.config import OptimConfig
from mrdistill.data.build import make_datasets
from mrdistill.distill import DistillObjective
from mrdistill.eval.metrics import psnr
from mrdistill.models import build_model
from mrdistill.train import loop
from mrdistill.train.checkpoint import all_finite, load_checkpoint
from mrdistill.train.loop import DivergenceError, fit
from mrdistill.train.plan import StagePlan

KW = {"cascades": 1, "convs": 3, "channels": 8}


class NaNAt(nn.Module):
    """Plain supervised training whose loss is NaN at the given (0-based) steps."""

    def __init__(self, steps: set[int]) -> None:
        super().__init__()
        self.inner, self.steps, self.calls = DistillObjective(), steps, 0

    def forward(self, model, sample):
        out = self.inner(model, sample)
        if model.training:
            if self.calls in self.steps:
                out = {k: v * math.nan for k, v in out.items()}
            self.calls += 1
        return out


@pytest.fixture(scope="module")
def data(tiny_data_module):
    return make_datasets(tiny_data_module)


@pytest.fixture(scope="module")
def tiny_data_module():
    from mrdistill.config import DataConfig
    return DataConfig(image_size=32, max_train_slices=8, max_eval_slices=4, slab=8)


def run_fit(tmp_path, data, objective, **optim):
    model = build_model("dccnn", seed=0, **KW)
    cfg = OptimConfig(**{"epochs": 3, "batch_size": 2, "lr": 3e-3, **optim})
    return fit(model, objective, data["train"], data["val"], StagePlan(cfg, model_name="dccnn",
               model_kwargs=KW, progress=False, stage="stage1"), tmp_path)


def test_nan_loss_stops_with_last_good_checkpoint_intact(tmp_path, data):
    with pytest.raises(DivergenceError) as err:
        run_fit(tmp_path, data, NaNAt({5}))  # epoch 2, its second step
    line = str(err.value)
    assert "\n" not in line and "step 6" in line and "stage1" in line and "last.pt" in line
    assert "epoch 1" in line  # the last good checkpoint: end of epoch 1
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(tmp_path / "checkpoints" / name)
        assert ckpt["epoch"] == 1 and all_finite(ckpt["model"]) and math.isfinite(ckpt["metric"]["psnr"])


def test_skip_nonfinite_counts_and_continues(tmp_path, data):
    res = run_fit(tmp_path, data, NaNAt({1, 6}), skip_nonfinite=2)
    assert [r["skipped_nonfinite"] for r in res.history] == [1, 1, 0]
    assert all(all_finite(load_checkpoint(tmp_path / "checkpoints" / n)["model"])
               for n in ("last.pt", "best.pt"))
    with pytest.raises(DivergenceError, match="step 3"):  # a third one is one too many
        run_fit(tmp_path / "again", data, NaNAt({0, 1, 2}), skip_nonfinite=2)


def test_nan_validation_is_never_best(tmp_path, data, monkeypatch):
    real, calls = loop.validate, [0]

    def nan_second(*args):
        value, recons = real(*args)
        calls[0] += 1
        return (math.nan if calls[0] == 2 else value), recons

    monkeypatch.setattr(loop, "validate", nan_second)
    with pytest.raises(DivergenceError, match="non-finite validation psnr"):
        run_fit(tmp_path, data, DistillObjective())
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == 1 and math.isfinite(best["metric"]["psnr"])


def test_nan_psnr_is_nan_not_inf():
    gt = torch.rand(2, 8, 8)
    assert math.isnan(psnr(gt, gt * math.nan))
    assert psnr(gt, gt) == math.inf


def test_cli_divergence_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from tests.conftest import run_cli

    real = DistillObjective.forward
    calls = [0]

    def nan_at_three(self, model, sample):
        out = real(self, model, sample)
        if model.training:
            calls[0] += 1
            if calls[0] == 3:
                out = {k: v * math.nan for k, v in out.items()}
        return out

    monkeypatch.setattr(DistillObjective, "forward", nan_at_three)
    code, _, err = run_cli(["train", "--config", "configs/kdmri_teacher.yaml", "--preset", "smoke",
                            "--set", f"out_dir={tmp_path}", "--set", "optim.epochs=2",
                            "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "non-finite loss at step 3" in err
    # It resumes from the last good checkpoint (skip_nonfinite may change on resume).
    code, _, err = run_cli(["train", "--config", "configs/kdmri_teacher.yaml", "--preset", "smoke",
                            "--set", f"out_dir={tmp_path}", "--set", "optim.epochs=2",
                            "--set", "optim.skip_nonfinite=1", "--no-progress", "--resume"], capsys)
    assert code == 0, err
