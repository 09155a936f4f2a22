"""Mixed precision: FFTs and data consistency stay float32 under autocast; bf16 training on CPU
stays close to fp32; float16 off CUDA is refused with one line."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mrdistill.config import load_run_config
from mrdistill.data.build import make_task_datasets
from mrdistill.distill import DistillObjective
from mrdistill.errors import MrdistillError
from mrdistill.accel import training_kernels_available
from mrdistill.models import build_model
from mrdistill.physics.fft import fft2c
from mrdistill.train.loop import fit
from mrdistill.train.precision import Precision, check_precision
from mrdistill.train.plan import StagePlan
from conftest import run_cli, synthetic_batch

# bf16 vs fp32 on the kdmri_teacher smoke preset: measured 0.003 dB apart (validation PSNR).
BF16_PSNR_TOLERANCE_DB = 0.1


def test_dc_output_is_float32_and_keeps_sampled_kspace_under_bf16_autocast() -> None:
    sample = synthetic_batch(n=2, size=16, complex_input=True, seed=3)
    model = build_model("dccnn", cascades=2, convs=3, channels=8, in_channels=2, seed=0)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(sample.kspace, sample.mask, return_features=True)
    # The convolutions did run in bf16 (autocast is on), the DC outputs did not.
    assert out.features["cascade1.conv1"].dtype == torch.bfloat16
    assert out.image.dtype == torch.float32 and out.features["cascade1.out"].dtype == torch.float32
    k = fft2c(torch.complex(out.image[:, :1], out.image[:, 1:]))
    sampled = sample.mask.expand_as(k).bool()
    assert torch.allclose(k[sampled], sample.kspace[sampled], atol=1e-5)


def test_fp16_on_cpu_and_unknown_precision_are_refused(tmp_path, capsys) -> None:
    with pytest.raises(MrdistillError, match="optim.precision: fp16 needs a CUDA device"):
        check_precision("fp16", "cpu")
    with pytest.raises(MrdistillError, match="unknown optim.precision 'fp64'"):
        Precision("fp64", "cpu")
    code, _, err = run_cli(["train", "--config", "configs/kdmri_teacher.yaml", "--preset", "smoke",
                            "--set", f"out_dir={tmp_path}", "--set", "optim.precision=fp16",
                            "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "optim.precision" in err
    assert not (tmp_path / "kdmri_teacher").exists()  # refused before the run folder is made


def test_bf16_training_on_cpu_is_finite_and_close_to_fp32(tmp_path) -> None:
    cfg = load_run_config("configs/kdmri_teacher.yaml", preset="smoke")
    data = make_task_datasets(cfg.data, cfg.seed)
    scores = {}
    for precision in ("fp32", "bf16"):
        cfg.optim.precision = precision
        model = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
        (tmp_path / precision).mkdir()
        res = fit(model, DistillObjective(), data["train"], data["val"], StagePlan(cfg.optim,
                  model_name=cfg.model.name, model_kwargs=cfg.model.kwargs, seed=cfg.seed,
                  progress=False), tmp_path / precision)
        assert all(math.isfinite(row["loss"]) for row in res.history)
        assert all(torch.isfinite(p).all() for p in model.parameters())
        scores[precision] = res.best_value
    assert math.isfinite(scores["bf16"])
    assert abs(scores["bf16"] - scores["fp32"]) < BF16_PSNR_TOLERANCE_DB


def test_channels_last_training_matches_nchw(tmp_path, capsys) -> None:
    """`optim.channels_last` trains in channels_last (the weights stay so) and ends where NCHW
    does, up to float rounding: the convolutions' summation order differs, and Adam turns rounding
    in a gradient that is zero in exact arithmetic (a cascade's last bias, which hard DC cancels)
    into up to a fraction of an lr-sized step (measured: 4.7e-5 after 4 steps at lr 3e-3)."""
    cfg = load_run_config("configs/kdmri_teacher.yaml", preset="smoke", overrides=[
        "optim.max_steps=4", "optim.lr=0.003", "optim.batch_size=2", "data.max_train_slices=8",
        "data.max_eval_slices=2", "model.kwargs.channels=8", "model.kwargs.convs=3"])
    data = make_task_datasets(cfg.data, cfg.seed)
    weights, losses = {}, {}
    for layout in (False, True):
        cfg.optim.channels_last = layout
        model = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
        trained_by = set()  # the conv classes that ran training forwards
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda mod, *_: trained_by.add(type(mod).__name__)
                                        if torch.is_grad_enabled() else None)
        res = fit(model, DistillObjective(), data["train"], data["val"], StagePlan(cfg.optim,
                  model_name=cfg.model.name, model_kwargs=cfg.model.kwargs, seed=cfg.seed,
                  progress=False), tmp_path / str(layout))
        convs = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and
                             not p.is_contiguous() for p in convs) == layout
        # channels_last: the convs train through accel.fast_training (compiled kernels where they
        # are faster), and are plain nn.Conv2d again afterwards.
        native_used = layout and training_kernels_available()
        assert trained_by == ({"NativeGradConv2d"} if native_used else {"Conv2d"})
        assert all(type(m) is nn.Conv2d for m in model.modules() if isinstance(m, nn.Conv2d))
        weights[layout] = torch.cat([p.detach().flatten() for p in model.parameters()])
        losses[layout] = res.history[-1]["loss"]
    diff = (weights[True] - weights[False]).abs()
    assert diff.max() < 1e-4 and diff.median() < 1e-6
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    code, _, err = run_cli(["train", "--config", "configs/kdmri_teacher.yaml", "--preset", "smoke",
                            "--set", f"out_dir={tmp_path}", "--set", "optim.channels_last=2",
                            "--no-progress"], capsys)
    assert code == 2 and "optim.channels_last" in err and err.count("\n") == 1
