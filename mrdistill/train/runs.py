"""`train` and `distill` runs: config -> data, models, objective -> `fit` -> test report."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from mrdistill.config import RunConfig, StageConfig, load_yaml, save_config, to_dict
from mrdistill.data.datasets import MixedDataset, SliceDataset
from mrdistill.data.build import make_task_datasets
from mrdistill.data.superres import check_model_data
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.distill.teacher_correction import TeacherCorrectionObjective
from mrdistill.distill.init import init_from_teacher
from mrdistill.device import resolve_device
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models import build_model
from mrdistill.models.foreign import import_plugins
from mrdistill.models.vdsr import Bicubic
from mrdistill.train.checkpoint import data_meta, load_checkpoint, model_payload, save_checkpoint
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.logging import check_tensorboard
from mrdistill.train.loop import FitResult, fit
from mrdistill.train.state import RunState
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


# Config keys that may differ between a run and its resumption: they change no result (or, for
# skip_nonfinite, let a run that stopped on a non-finite step go on past it).
RESUME_FREE_KEYS = ("device", "progress", "optim.checkpoint_every", "optim.checkpoint_minutes",
                    "optim.skip_nonfinite", "logging.tensorboard")


def claim_dir(path: Path, overwrite: bool) -> Path:
    """Create `path`; a non-empty existing folder is only replaced with `overwrite`."""
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise MrdistillError(f"{path} already holds results; pass --resume to continue an "
                                 f"interrupted run, --overwrite to start again, or choose another "
                                 f"name/output folder")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare_run_dir(cfg: RunConfig, overwrite: bool) -> Path:
    """Claim the run directory and save the resolved config in it."""
    run_dir = claim_dir(cfg.run_dir, overwrite)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def check_same_config(cfg: RunConfig, saved: Path) -> None:
    """A resumed run must be the run that was interrupted: its config (but for `RESUME_FREE_KEYS`)
    equals the saved one; the first differing key is named."""
    old, new = load_yaml(saved), to_dict(cfg)
    for key in RESUME_FREE_KEYS:
        *parents, last = key.split(".")
        for tree in (old, new):
            for part in parents:
                tree = tree.get(part) if isinstance(tree, dict) else None
            if isinstance(tree, dict):
                tree.pop(last, None)
    if old != new:
        key = _first_difference(old, new)
        raise MrdistillError(f"--resume: the config differs from the interrupted run's ({saved}) at "
                             f"{key!r}; resume with the same config, or start again with --overwrite")


def _first_difference(a: object, b: object, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
    return where or "config"


def start_run(cfg: RunConfig, overwrite: bool = False, resume: bool = False) -> tuple[RunConfig, RunState]:
    """Check what can be checked before anything is written (device, options), then claim the run
    directory, or reopen it with `resume` -> (config with the resolved device, run state)."""
    if resume and overwrite:
        raise MrdistillError("--resume continues a run and --overwrite replaces it; pass only one")
    cfg = replace(cfg, device=str(resolve_device(cfg.device)))
    if cfg.logging.tensorboard:
        check_tensorboard()
    saved = cfg.run_dir / "config.yaml"
    if resume and saved.is_file():
        check_same_config(cfg, saved)
    else:
        prepare_run_dir(cfg, overwrite)
    return cfg, RunState.open(cfg.run_dir, resume, cfg.logging.tensorboard)


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
    baseline, base_model = baseline_for(cfg)
    ev = evaluate_models({baseline: base_model, cfg.name: model}, test, cfg.device)
    return write_evaluation(run_dir, ev, title, [f"config: {run_dir / 'config.yaml'}"],
                            zero_filled=baseline)


def _save_corrected_teacher(cfg: RunConfig, run_dir: Path, teacher: nn.Module | None,
                            stage: int) -> None:
    """`checkpoints/teacher_corrected.pt`: the teacher as teacher correction left it (last step)."""
    identity = teacher_identity(cfg.distill.teacher) if cfg.distill else None
    if teacher is None or identity is None:
        return  # an in-memory teacher has no checkpoint to take its name and arguments from
    save_checkpoint(run_dir / "checkpoints" / "teacher_corrected.pt",
                    model_payload(teacher, identity[0], identity[1], stage=stage,
                                  **data_meta(cfg.data)))


def train_run(cfg: RunConfig, overwrite: bool = False,
              datasets: dict[str, SliceDataset] | None = None, resume: bool = False) -> RunResult:
    """Supervised training of `cfg.model` (a teacher or a plain student); self-supervised (no
    targets, see `train.unsupervised`) when the config has a `selfsup` section. `resume`
    continues an interrupted run from its `last.pt` (a fresh start when there is none)."""
    import_plugins(cfg.plugins)
    if cfg.selfsup is not None:
        check_selfsup(cfg.selfsup, cfg.data)
    cfg, run = start_run(cfg, overwrite, resume)
    run_dir = run.run_dir
    data = datasets or make_task_datasets(cfg.data, cfg.seed)
    try:
        if cfg.selfsup is not None:
            model, fits, table = selfsup_train(cfg, run, data)
            return RunResult(run_dir, model, fits, table)
        if cfg.sft is not None:  # a student-friendly teacher, trained with student branches
            model, fits, table = sft_train(cfg, run, data)
            return RunResult(run_dir, model, fits, table)
        model = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
        check_model_data(model, cfg.data)
        result = fit(model, DistillObjective(), data["train"], data["val"], cfg.optim, run_dir,
                     model_name=cfg.model.name, model_kwargs=cfg.model.kwargs, seed=cfg.seed,
                     val_metric=cfg.val_metric, device=cfg.device, stage="train",
                     progress=cfg.progress, meta=data_meta(cfg.data), run=run)
        table = _test_report(cfg, run_dir, model, data["test"], f"{cfg.name}: test set")
        return RunResult(run_dir, model, [result], table)
    finally:
        run.log.close()


def distill_run(cfg: RunConfig, overwrite: bool = False,
                datasets: dict[str, SliceDataset] | None = None,
                teacher: nn.Module | None = None, resume: bool = False) -> RunResult:
    """Distil `cfg.distill.teacher` into `cfg.model`, stage by stage (each stage restores the epoch
    its `select` rule keeps: by default the best validation metric with a task term, else the lowest
    validation value of the stage's own objective);
    without targets from a teacher ensemble when the config has `distill.adaptive`."""
    adaptive = cfg.distill.adaptive if cfg.distill is not None else None
    if cfg.distill is None or not (cfg.distill.stages or adaptive):
        raise MrdistillError("distill needs a 'distill' section with at least one stage")
    if adaptive is not None and cfg.distill.stages:
        raise MrdistillError("distill.adaptive replaces distill.stages; remove one of them")
    import_plugins(cfg.plugins)
    device = resolve_device(cfg.device)  # before anything is loaded or written
    if teacher is None:
        teacher = load_teacher(cfg.distill.teacher, str(device))
    if adaptive is not None:
        check_adaptive(adaptive, teacher, cfg.data.mode)
    cfg, run = start_run(cfg, overwrite, resume)
    try:
        return _distill(cfg, run, datasets, teacher)
    finally:
        run.log.close()


def _distill(cfg: RunConfig, run: RunState, datasets: dict[str, SliceDataset] | None,
             teacher: nn.Module) -> RunResult:
    """The stages of `distill_run` (finished ones are skipped when the run resumes)."""
    assert cfg.distill is not None
    run_dir = run.run_dir
    data = datasets or make_task_datasets(cfg.data, cfg.seed)
    if cfg.distill.adaptive is not None:
        student, fits, table = adaptive_distill(cfg, run, data, teacher)
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
    for k, stage in enumerate(cfg.distill.stages):
        done = run.completed_fit(k)
        if done is not None:  # finished before the checkpoint this run resumed from
            fits.append(done)
            continue
        if any(s.teacher_correction is not None for s in cfg.distill.stages[:k]):
            run.carry("teacher", teacher)  # corrected earlier: a resumed run gets its weights back
        objective = build_objective(stage, teacher)
        fits.append(fit(student, objective, train_set, data["val"], cfg.optim, run_dir,
                        model_name=cfg.model.name, model_kwargs=cfg.model.kwargs,
                        seed=cfg.seed + k, val_metric=cfg.val_metric, device=cfg.device,
                        epochs=stage.epochs, lr=stage.lr, max_steps=stage.max_steps,
                        stage=f"stage{k + 1}", select=stage.selection,
                        progress=cfg.progress, meta=data_meta(cfg.data), run=run))
        if isinstance(objective, TeacherCorrectionObjective):
            teacher = run.carry("teacher", objective.teacher)  # later stages learn from it
            _save_corrected_teacher(cfg, run_dir, teacher, k + 1)
    table = _test_report(cfg, run_dir, student, data["test"], f"{cfg.name}: test set")
    return RunResult(run_dir, student, fits, table)

