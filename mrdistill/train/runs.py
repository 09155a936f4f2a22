"""`train` and `distill` runs: config -> data, models, objective -> `fit` -> test report."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mrdistill.config import RunConfig, StageConfig, save_config
from mrdistill.data.datasets import MixedDataset, SliceDataset, make_datasets
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.train.checkpoint import load_checkpoint, load_model
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.loop import FitResult, fit


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
    """Claim the run directory and save the resolved config in it."""
    run_dir = claim_dir(cfg.run_dir, overwrite)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def build_objective(stage: StageConfig, teacher: nn.Module | None) -> DistillObjective:
    """The objective of one stage: task term plus the stage's weighted KD terms."""
    terms = {}
    for i, term in enumerate(stage.kd):
        key = term.name if term.name not in terms else f"{term.name}{i}"
        terms[key] = (build_kd(term.name, **term.kwargs), term.weight)
    return DistillObjective(teacher, terms, task_weight=stage.task_weight)


def _test_report(cfg: RunConfig, run_dir: Path, model: nn.Module, test: SliceDataset,
                 title: str) -> str:
    ev = evaluate_models({"zero-filled": None, cfg.name: model}, test, cfg.device)
    return write_evaluation(run_dir, ev, title, [f"config: {run_dir / 'config.yaml'}"])


def train_run(cfg: RunConfig, overwrite: bool = False,
              datasets: dict[str, SliceDataset] | None = None) -> RunResult:
    """Supervised training of `cfg.model` (a teacher or a plain student)."""
    run_dir = prepare_run_dir(cfg, overwrite)
    data = datasets or make_datasets(cfg.data, cfg.seed)
    model = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
    result = fit(model, DistillObjective(), data["train"], data["val"], cfg.optim, run_dir,
                 model_name=cfg.model.name, model_kwargs=cfg.model.kwargs, seed=cfg.seed,
                 val_metric=cfg.val_metric, device=cfg.device, stage="train",
                 progress=cfg.progress)
    table = _test_report(cfg, run_dir, model, data["test"], f"{cfg.name}: test set")
    return RunResult(run_dir, model, [result], table)


def distill_run(cfg: RunConfig, overwrite: bool = False,
                datasets: dict[str, SliceDataset] | None = None,
                teacher: nn.Module | None = None) -> RunResult:
    """Distil `cfg.distill.teacher` into `cfg.model`, stage by stage (each stage restores its best)."""
    if cfg.distill is None or not cfg.distill.stages:
        raise MrdistillError("distill needs a 'distill' section with at least one stage")
    if teacher is None:
        if not cfg.distill.teacher:
            raise MrdistillError("distill.teacher: no teacher checkpoint given")
        teacher = load_model(cfg.distill.teacher, cfg.device)
    run_dir = prepare_run_dir(cfg, overwrite)
    data = datasets or make_datasets(cfg.data, cfg.seed)
    student = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
    if cfg.distill.init:
        student.load_state_dict(load_checkpoint(cfg.distill.init)["model"])
    # Undersampled-only slices (if any) are labelled by the teacher: the student sees them too.
    train_set = MixedDataset(data["train"], data["unlabeled"]) if "unlabeled" in data else data["train"]
    fits = []
    for k, stage in enumerate(cfg.distill.stages):
        objective = build_objective(stage, teacher)
        fits.append(fit(student, objective, train_set, data["val"], cfg.optim, run_dir,
                        model_name=cfg.model.name, model_kwargs=cfg.model.kwargs,
                        seed=cfg.seed + k, val_metric=cfg.val_metric, device=cfg.device,
                        epochs=stage.epochs, lr=stage.lr, stage=f"stage{k + 1}",
                        progress=cfg.progress))
    table = _test_report(cfg, run_dir, student, data["test"], f"{cfg.name}: test set")
    return RunResult(run_dir, student, fits, table)

