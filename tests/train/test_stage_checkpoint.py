"""`train.stage_checkpoint.write_stage` and `train.resume.restore_stage`, alone: what one writes the
other loads back exactly; non-finite weights and another world size are refused."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mrdistill.config import OptimConfig
from mrdistill.errors import MrdistillError
from mrdistill.train.checkpoint import load_checkpoint
from mrdistill.train.distributed import DistContext
from mrdistill.train.params import make_optimizer, trained_params
from mrdistill.train.plan import StageParts, StagePlan
from mrdistill.train.precision import Precision
from mrdistill.train.resume import restore_stage
from mrdistill.train.schedule import EpochScheduler
from mrdistill.train.stage_checkpoint import NonFiniteWeights, write_stage
from mrdistill.train.state import RunState, StagePosition

PLAN = StagePlan(OptimConfig(epochs=2, lr=0.01), model_name="dccnn",
                 model_kwargs={"cascades": 1, "convs": 2, "channels": 4}, stage="stage1", meta={"note": 1})


def _parts(seed: int) -> StageParts:
    torch.manual_seed(seed)
    model, objective = nn.Conv2d(1, 2, 3), nn.Module()
    opt = make_optimizer(trained_params(model, objective, 0.01), 0.01, PLAN.optim)
    return StageParts(model, objective, opt, EpochScheduler(opt, PLAN.optim, 2, "psnr"),
                      Precision("fp32", torch.device("cpu")))


def _train_once(parts: StageParts) -> None:
    parts.model(torch.ones(1, 1, 4, 4)).square().sum().backward()
    parts.opt.step()
    parts.sched.step(1.0)


def test_written_stage_resumes_exactly(tmp_path) -> None:
    parts = _parts(0)
    _train_once(parts)
    pos = StagePosition(epoch=1, batch=2, step=6, good=2, sums={"loss": 0.5}, best_epoch=1,
                        best_value=29.0, best_score=29.0, history=[{"epoch": 1}])
    best = {k: v.clone() for k, v in parts.model.state_dict().items()}
    run = RunState(tmp_path)
    where = write_stage(run, PLAN, parts, pos, best, DistContext(), {"psnr": 30.0}, best=True)
    assert "stage1, epoch 1, step 6" in where
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["note"] == 1 and ckpt["model_name"] == "dccnn" and ckpt["metric"] == {"psnr": 30.0}

    fresh = _parts(1)
    got_pos, got_best = restore_stage(ckpt, fresh, DistContext(), where)
    assert got_pos == pos
    for k, v in parts.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[k], v) and torch.equal(got_best[k], best[k])
    assert fresh.opt.state_dict()["state"][0]["exp_avg"].equal(parts.opt.state_dict()["state"][0]["exp_avg"])
    assert fresh.sched.state_dict() == parts.sched.state_dict()


def test_best_pt_only_when_best_and_nothing_for_non_finite_weights(tmp_path) -> None:
    parts, run = _parts(0), RunState(tmp_path)
    write_stage(run, PLAN, parts, StagePosition(), None, DistContext(), {})
    assert not (tmp_path / "checkpoints" / "best.pt").exists()
    with torch.no_grad():
        parts.model.weight[0, 0, 0, 0] = math.nan
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(NonFiniteWeights):
        write_stage(run, PLAN, parts, StagePosition(step=9), None, DistContext(), {}, best=True)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


def test_another_world_size_is_refused(tmp_path) -> None:
    parts, run = _parts(0), RunState(tmp_path)
    where = write_stage(run, PLAN, parts, StagePosition(), None, DistContext(), {})
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(MrdistillError, match="written by a run of 1 process"):
        restore_stage(ckpt, _parts(1), DistContext(rank=0, world_size=2), where)
