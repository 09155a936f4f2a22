"""The per-epoch lr schedule: warm-up, step / plateau / cosine, resumable state, bad settings."""

import math
from pathlib import Path

import pytest
import torch

from mrdistill.config import OptimConfig, load_run_config
from mrdistill.errors import MrdistillError
from mrdistill.train.schedule import EpochScheduler


def _lrs(optim: OptimConfig, metrics: list[float], val_metric: str = "psnr") -> list[float]:
    """lr of each epoch (before its step), for len(metrics) epochs."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = EpochScheduler(opt, optim, len(metrics), val_metric)
    out = []
    for m in metrics:
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(m)
    return out


def test_step_without_warmup_is_torch_steplr():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.3)
    expected = []
    for _ in range(8):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert _lrs(OptimConfig(step_size=3, gamma=0.3), [0.0] * 8) == pytest.approx(expected)


def test_linear_warmup_then_step():
    lrs = _lrs(OptimConfig(step_size=2, gamma=0.5, warmup_epochs=3), [0.0] * 8)
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 0.5, 0.5, 0.25])


def test_plateau_drops_after_patience_in_the_metrics_direction():
    cfg = OptimConfig(scheduler="plateau", gamma=0.1, patience=1)
    assert _lrs(cfg, [1, 2, 2, 2, 2, 2]) == pytest.approx([1, 1, 1, 1, 0.1, 0.1])
    # nmse: lower is better, so a falling value is progress
    assert _lrs(cfg, [5, 4, 3, 2, 1, 0.5], "nmse") == pytest.approx([1] * 6)


def test_cosine_after_warmup_ends_near_zero():
    lrs = _lrs(OptimConfig(scheduler="cosine", warmup_epochs=2), [0.0] * 12)
    assert lrs[:3] == pytest.approx([0.5, 1, 1])
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.03


def test_state_dict_resumes_the_same_schedule():
    cfg = OptimConfig(scheduler="plateau", gamma=0.5, patience=0, warmup_epochs=2)
    metrics = [1, 2, 3, 3, 3, 3, 4, 4]
    full = _lrs(cfg, metrics)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = EpochScheduler(opt, cfg, len(metrics), "psnr")
    for m in metrics[:4]:
        opt.step()
        sched.step(m)
    state, opt_state = sched.state_dict(), opt.state_dict()
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    opt2.load_state_dict(opt_state)
    again = EpochScheduler(opt2, cfg, len(metrics), "psnr")
    again.load_state_dict(state)
    rest = []
    for m in metrics[4:]:
        rest.append(opt2.param_groups[0]["lr"])
        opt2.step()
        again.step(m)
    assert rest == pytest.approx(full[4:])


def test_bad_schedule_names_the_key():
    with pytest.raises(MrdistillError, match="optim.scheduler 'linear'"):
        _lrs(OptimConfig(scheduler="linear"), [0.0])
    with pytest.raises(MrdistillError, match="optim.warmup_epochs"):
        _lrs(OptimConfig(warmup_epochs=-1), [0.0])


def test_adaptive_kd_config_uses_the_papers_schedule():
    cfg = load_run_config(Path(__file__).resolve().parents[2] / "configs" / "adaptive_kd.yaml")
    assert (cfg.optim.scheduler, cfg.optim.warmup_epochs, cfg.val_metric) == ("plateau", 5, "ssim")
    assert not math.isnan(cfg.optim.gamma)
