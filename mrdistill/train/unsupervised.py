"""Runs without fully sampled training data (REFERENCE.md section 4), dispatched from `train.runs`:

- `selfsup_train`: K self-supervised teachers (an "ensemble" checkpoint), or one self-supervised model;
- `adaptive_distill`: a student distilled from a teacher ensemble with adaptive or plain weights.

Training sets carry no targets (`data.build.without_targets`); every training batch has `target=None`. Targets are
read by evaluation only: the test report and the per-epoch validation score that `fit` logs. That
score also picks best.pt; with `checkpoint: last` (the default) the run keeps its last weights, so
nothing the run keeps depends on a target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from mrdistill.config import AdaptiveConfig, RunConfig
from mrdistill.data.build import without_targets
from mrdistill.data.datasets import SliceDataset
from mrdistill.distill import DistillObjective
from mrdistill.distill.adaptive import AdaptiveDistillation, check_clip, dataset_mean_variance
from mrdistill.distill.teacher_cache import TeacherCache, cache_allowed
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models import build_model
from mrdistill.selfsup.teachers import (CHECKPOINTS, SelfSupervisedObjective, check_selfsup,
                                        members_of)
from mrdistill.train import distributed
from mrdistill.train.checkpoint import load_checkpoint
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.loop import FitResult, fit
from mrdistill.train.plan import run_plan
from mrdistill.train.state import RunState


def keep_checkpoint(model: nn.Module, run_dir: Path, choice: str) -> None:
    """`fit` leaves the best-by-validation weights in `model`; "last" loads the last epoch instead."""
    if choice == "last":
        model.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])


def _report(cfg: RunConfig, run_dir: Path, models: dict[str, nn.Module | None],
            test: SliceDataset, notes: list[str]) -> str:
    if not distributed.is_main():
        return ""  # under torchrun rank 0 evaluates and writes
    ev = evaluate_models({"zero-filled": None, **models}, test, cfg.device)
    return write_evaluation(run_dir, ev, f"{cfg.name}: test set",
                            [f"config: {run_dir / 'config.yaml'}", *notes])


def selfsup_train(cfg: RunConfig, run: RunState,
                  data: dict[str, SliceDataset]) -> tuple[nn.Module, list[FitResult], str]:
    """Train `cfg.selfsup.teachers` copies of `cfg.model` self-supervised; return (model, fits, table).

    With more than one teacher the model (and checkpoint) is an "ensemble" of them.
    """
    sc = cfg.selfsup
    assert sc is not None
    run_dir = run.run_dir
    check_selfsup(sc, cfg.data)
    if sc.teachers > 1:
        name = "ensemble"
        kwargs = {"member": cfg.model.name, "members": sc.teachers, "member_kwargs": dict(cfg.model.kwargs)}
    else:
        name, kwargs = cfg.model.name, dict(cfg.model.kwargs)
    model = build_model(name, seed=cfg.seed, **kwargs)
    ctx = distributed.context(cfg.device)  # each rank draws its own part of the batch's masks
    objective = SelfSupervisedObjective(sc, seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)
    plan = run_plan(cfg, f"selfsup-{sc.method}", model_name=name, model_kwargs=kwargs)
    result = fit(model, objective, without_targets(data), data["val"], plan, run)
    keep_checkpoint(model, run_dir, sc.checkpoint)
    models: dict[str, nn.Module | None] = {cfg.name: model}
    if sc.teachers > 1:
        models.update({f"{cfg.name}/teacher{k + 1}": m for k, m in enumerate(members_of(model))})
    table = _report(cfg, run_dir, models, data["test"],
                    [f"self-supervised ({sc.method}), {sc.teachers} teacher(s), kept: {sc.checkpoint}"])
    return model, [result], table


def check_adaptive(ac: AdaptiveConfig, teacher: nn.Module, data_mode: str) -> None:
    """Reject bad settings before any training starts (one clear line each)."""
    check_choice("KD weighting", ac.weighting, ("adaptive", "plain"))
    check_choice("variance average", ac.average, ("precompute", "running"))
    check_choice("checkpoint choice", ac.checkpoint, CHECKPOINTS)
    check_clip(ac.clip)
    if data_mode != "complex":
        raise MrdistillError("adaptive distillation needs data.mode: complex (as the teachers)")
    teachers = len(members_of(teacher))
    if ac.weighting == "adaptive" and teachers < 2:
        raise MrdistillError(f"adaptive weighting needs at least 2 teachers (an ensemble checkpoint), "
                             f"got {teachers}; use weighting: plain")


def adaptive_distill(cfg: RunConfig, run: RunState, data: dict[str, SliceDataset],
                     teacher: nn.Module, init: dict[str, Any] | None
                     ) -> tuple[nn.Module, list[FitResult], str]:
    """Distil `teacher` into `cfg.model` without targets (epochs and lr from `cfg.optim`), from
    `init` (the checked start weights of `runs.load_init`) when given."""
    assert cfg.distill is not None and cfg.distill.adaptive is not None
    ac = cfg.distill.adaptive
    run_dir = run.run_dir
    train = without_targets(data)
    # One cache for the variance pass and training (exact only with fixed masks: `cache_allowed`).
    cache = TeacherCache() if cache_allowed(ac.cache_teacher, cfg.data, "distill.adaptive.cache_teacher") else None
    teacher.eval()
    kd = AdaptiveDistillation(ac.weighting, ac.clip, "running", ac.momentum)
    notes = [f"distilled without targets, {ac.weighting} weights, kept: {ac.checkpoint}"]
    if ac.weighting == "adaptive" and ac.average == "precompute":
        kd.set_average(dataset_mean_variance(teacher, train, cfg.device, progress=cfg.progress, cache=cache))
        notes.append(f"mean teacher variance over the training set: {float(kd.avg_variance):.6g}")
    objective = DistillObjective(teacher, {"adaptive": (kd, 1.0)}, task_weight=0.0, cache=cache)
    student = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
    if init is not None:
        student.load_state_dict(init)
    result = fit(student, objective, train, data["val"], run_plan(cfg, f"kd-{ac.weighting}"), run)
    keep_checkpoint(student, run_dir, ac.checkpoint)
    table = _report(cfg, run_dir, {"teachers": teacher, cfg.name: student}, data["test"], notes)
    return student, [result], table
