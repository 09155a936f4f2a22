"""`train.plan`: a stage's plan from a run config, and its per-stage overrides."""

from __future__ import annotations

import inspect

from mrdistill.config import OptimConfig, RunConfig
from mrdistill.train.checkpoint import data_meta
from mrdistill.train.loop import fit
from mrdistill.train.plan import StagePlan, run_plan


def test_run_plan_takes_the_run_config_and_overrides() -> None:
    cfg = RunConfig()
    plan = run_plan(cfg, "stage2", seed=cfg.seed + 1, epochs=3, lr=0.5)
    assert (plan.optim, plan.model_name, plan.model_kwargs) == (cfg.optim, cfg.model.name, cfg.model.kwargs)
    assert (plan.stage, plan.seed, plan.val_metric, plan.device) == ("stage2", cfg.seed + 1, cfg.val_metric,
                                                                      cfg.device)
    assert plan.meta == data_meta(cfg.data) and plan.data is cfg.data
    assert (plan.stage_epochs, plan.stage_lr, plan.stage_max_steps) == (3, 0.5, cfg.optim.max_steps)
    other = run_plan(cfg, "selfsup-ssdu", model_name="ensemble", model_kwargs={"members": 2})
    assert other.model_name == "ensemble" and other.model_kwargs == {"members": 2}


def test_stage_values_fall_back_to_the_optimiser_config() -> None:
    plan = StagePlan(OptimConfig(epochs=7, lr=0.002, max_steps=11), model_name="dccnn")
    assert (plan.stage_epochs, plan.stage_lr, plan.stage_max_steps) == (7, 0.002, 11)


def test_fit_takes_at_most_eight_parameters() -> None:
    assert len(inspect.signature(fit).parameters) <= 8
