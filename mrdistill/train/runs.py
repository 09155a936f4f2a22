"""`train` and `distill` runs: config -> data, models, objective -> `fit` -> test report."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mrdistill.config import RunConfig, StageConfig, save_config
from mrdistill.data.datasets import MixedDataset, SliceDataset
from mrdistill.data.build import make_task_datasets
from mrdistill.data.superres import check_model_data
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.distill.teacher_correction import TeacherCorrectionObjective
from mrdistill.distill.init import init_from_teacher
from mrdistill.distill.teacher_cache import CachedTeacher, check_cacheable
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models import build_model
from mrdistill.models.foreign import import_plugins
from mrdistill.models.vdsr import Bicubic
from mrdistill.train import distributed
from mrdistill.train.checkpoint import data_meta, load_checkpoint, model_payload, save_checkpoint
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.loop import FitResult, fit
from mrdistill.train.precision import check_precision
from mrdistill.train.sft_run import sft_train
from mrdistill.train.teachers import load_teacher, teacher_identity
from mrdistill.train.unsupervised import (adaptive_distill, check_adaptive, check_selfsup,
                                         selfsup_train)


@dataclass
class RunResult:
    run_dir: Path
    model: nn.Module
    fits: list[FitResult]
    table: str


def claim_dir(path: Path, overwrite: bool) -> Path:
    """Create `path`; a non-empty existing folder is only replaced with `overwrite`."""
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise MrdistillError(f"{path} already holds results; pass --overwrite or choose "
                                 f"another name/output folder")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare_run_dir(cfg: RunConfig, overwrite: bool) -> Path:
    """Claim the run directory and save the resolved config in it (after the checks that need
    the device)."""
    check_precision(cfg.optim.precision, cfg.device)

    def claim() -> None:
        save_config(cfg, claim_dir(cfg.run_dir, overwrite) / "config.yaml")

    distributed.on_main(claim, distributed.context(cfg.device))  # under torchrun rank 0 claims
    return cfg.run_dir


def build_objective(stage: StageConfig, teacher: nn.Module | None) -> DistillObjective:
    """The objective of one stage: task term plus the stage's weighted KD terms."""
    terms = {}
    for i, term in enumerate(stage.kd):
        key = term.name if term.name not in terms else f"{term.name}{i}"
        terms[key] = (build_kd(term.name, **term.kwargs), term.weight)
    if stage.teacher_correction is not None:  # the teacher learns while teaching
        assert teacher is not None
        return TeacherCorrectionObjective(teacher, terms, stage.task_weight, stage.teacher_correction)
    return DistillObjective(teacher, terms, task_weight=stage.task_weight)


def baseline_for(cfg: RunConfig) -> tuple[str, nn.Module | None]:
    """The reference row of a report: bicubic interpolation for super-resolution, zero filling
    (model None) for reconstruction."""
    sr = cfg.data.superres
    return ("bicubic", Bicubic(sr.scale)) if sr is not None else ("zero-filled", None)


def _test_report(cfg: RunConfig, run_dir: Path, model: nn.Module, test: SliceDataset,
                 title: str) -> str:
    if not distributed.is_main():
        return ""  # under torchrun rank 0 evaluates and writes
    baseline, base_model = baseline_for(cfg)
    ev = evaluate_models({baseline: base_model, cfg.name: model}, test, cfg.device)
    return write_evaluation(run_dir, ev, title, [f"config: {run_dir / 'config.yaml'}"],
                            zero_filled=baseline)


def _save_corrected_teacher(cfg: RunConfig, run_dir: Path, teacher: nn.Module | None,
                            stage: int) -> None:
    """`checkpoints/teacher_corrected.pt`: the teacher as teacher correction left it (last step)."""
    identity = teacher_identity(cfg.distill.teacher) if cfg.distill else None
    if teacher is None or identity is None or not distributed.is_main():
        return  # an in-memory teacher has no checkpoint to take its name and arguments from
    save_checkpoint(run_dir / "checkpoints" / "teacher_corrected.pt",
                    model_payload(teacher, identity[0], identity[1], stage=stage,
                                  **data_meta(cfg.data)))


def train_run(cfg: RunConfig, overwrite: bool = False,
              datasets: dict[str, SliceDataset] | None = None) -> RunResult:
    """Supervised training of `cfg.model` (a teacher or a plain student); self-supervised (no
    targets, see `train.unsupervised`) when the config has a `selfsup` section."""
    distributed.context(cfg.device)  # under torchrun: join the job (and pick this rank's GPU) first
    import_plugins(cfg.plugins)
    if cfg.selfsup is not None:
        check_selfsup(cfg.selfsup, cfg.data)
    run_dir = prepare_run_dir(cfg, overwrite)
    data = datasets or make_task_datasets(cfg.data, cfg.seed)
    if cfg.selfsup is not None:
        model, fits, table = selfsup_train(cfg, run_dir, data)
        return RunResult(run_dir, model, fits, table)
    if cfg.sft is not None:  # a student-friendly teacher, trained with student branches
        model, fits, table = sft_train(cfg, run_dir, data)
        return RunResult(run_dir, model, fits, table)
    model = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
    check_model_data(model, cfg.data)
    result = fit(model, DistillObjective(), data["train"], data["val"], cfg.optim, run_dir,
                 model_name=cfg.model.name, model_kwargs=cfg.model.kwargs, seed=cfg.seed,
                 val_metric=cfg.val_metric, device=cfg.device, stage="train",
                 data=cfg.data, progress=cfg.progress, meta=data_meta(cfg.data))
    table = _test_report(cfg, run_dir, model, data["test"], f"{cfg.name}: test set")
    return RunResult(run_dir, model, [result], table)


def distill_run(cfg: RunConfig, overwrite: bool = False,
                datasets: dict[str, SliceDataset] | None = None,
                teacher: nn.Module | None = None) -> RunResult:
    """Distil `cfg.distill.teacher` into `cfg.model`, stage by stage (each stage restores the epoch
    its `select` rule keeps: by default the best validation metric with a task term, else the lowest
    validation value of the stage's own objective);
    without targets from a teacher ensemble when the config has `distill.adaptive`."""
    adaptive = cfg.distill.adaptive if cfg.distill is not None else None
    if cfg.distill is None or not (cfg.distill.stages or adaptive):
        raise MrdistillError("distill needs a 'distill' section with at least one stage")
    if adaptive is not None and cfg.distill.stages:
        raise MrdistillError("distill.adaptive replaces distill.stages; remove one of them")
    distributed.context(cfg.device)  # under torchrun: join the job (and pick this rank's GPU) first
    import_plugins(cfg.plugins)
    if teacher is None:
        teacher = load_teacher(cfg.distill.teacher, cfg.device)
    if adaptive is not None:
        check_adaptive(adaptive, teacher, cfg.data.mode)
    if cfg.distill.cache_teacher:
        check_cacheable(cfg.data)
    run_dir = prepare_run_dir(cfg, overwrite)
    data = datasets or make_task_datasets(cfg.data, cfg.seed)
    if adaptive is not None:
        student, fits, table = adaptive_distill(cfg, run_dir, data, teacher)
        return RunResult(run_dir, student, fits, table)
    student = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
    if cfg.distill.init:
        student.load_state_dict(load_checkpoint(cfg.distill.init)["model"])
    if cfg.distill.init_from_teacher is not None:
        check_choice("student initialisation", cfg.distill.init_from_teacher, ("teacher_layers",))
        init_from_teacher(student, teacher)
    check_model_data(student, cfg.data, "student")
    check_model_data(teacher, cfg.data, "teacher")
    # Undersampled-only slices (if any) are labelled by the teacher: the student sees them too.
    train_set = MixedDataset(data["train"], data["unlabeled"]) if "unlabeled" in data else data["train"]
    fits = []
    cached: CachedTeacher | None = None
    for k, stage in enumerate(cfg.distill.stages):
        frozen = teacher
        if cfg.distill.cache_teacher and stage.teacher_correction is None:  # a learning teacher: never
            if cached is None or cached.teacher is not teacher:  # a corrected teacher: a new cache
                cached = CachedTeacher(teacher)
            frozen = cached
        objective = build_objective(stage, frozen)
        fits.append(fit(student, objective, train_set, data["val"], cfg.optim, run_dir,
                        model_name=cfg.model.name, model_kwargs=cfg.model.kwargs,
                        seed=cfg.seed + k, val_metric=cfg.val_metric, device=cfg.device,
                        epochs=stage.epochs, lr=stage.lr, max_steps=stage.max_steps,
                        stage=f"stage{k + 1}", select=stage.selection, data=cfg.data,
                        progress=cfg.progress, meta=data_meta(cfg.data)))
        if isinstance(objective, TeacherCorrectionObjective):
            teacher = objective.teacher  # later stages are taught by the corrected teacher
            _save_corrected_teacher(cfg, run_dir, teacher, k + 1)
    table = _test_report(cfg, run_dir, student, data["test"], f"{cfg.name}: test set")
    return RunResult(run_dir, student, fits, table)

