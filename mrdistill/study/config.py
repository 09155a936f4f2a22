"""The study's typed config (defaults live here), its presets, and loading with `--set` overrides.

The default study is SFT-KD-Recon's grid on the embedded brain data: D5C5 teacher, D3C5 student,
five KD methods (FitNets, AT, CC, FSP, SP), each distilled from an ordinary and from a
student-friendly teacher, at 4x and 5x; each method is a feature stage followed by an L1-to-target
stage, and every training uses the paper's recipe (Adam 1e-3, StepLR(40, 0.1), 150 epochs, batch 4).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mrdistill.config import (DataConfig, KDTermConfig, ModelConfig, OptimConfig, SFTConfig,
                              StageConfig, apply_overrides, deep_merge, from_dict, load_yaml,
                              to_dict)
from mrdistill.atomic import atomic_write_text
from mrdistill.config.checks import (ACCELERATION, COUNT, EPOCHS, NAME, NON_NEGATIVE_INT, POSITIVE,
                                      SEED, checked, each, one_of)
from mrdistill.config.run import STAGE_SELECTIONS
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.eval.metrics import METRICS

EXECUTORS = ("local", "slurm", "submitit-local")
# ExecutorConfig keys that only a submitit executor uses (set with a local one they would be ignored)
SLURM_KEYS = ("partition", "gpus_per_cell", "cpus_per_cell", "mem_gb", "time_min",
              "array_parallelism", "additional")


@dataclass
class ExecutorConfig:
    """Where a study's cells train (docs/study.md, "Cells in parallel and on Slurm").

    `local`: on this machine, in the study's process with `jobs: 1`, else up to `jobs` worker
    processes at once; `slurm`: one Slurm job per cell through submitit (the `cluster` extra),
    the cells whose dependencies are done submitted together as a job array; `submitit-local`:
    submitit's local executor (real subprocesses, up to `jobs` at once), the Slurm path without
    Slurm."""

    kind: str = checked("local", one_of(*EXECUTORS))
    jobs: int = checked(1, COUNT)
    threads: int | None = checked(None, COUNT)  # torch threads per cell; None: cores // jobs (>= 1)
    poll_seconds: float = checked(2.0, POSITIVE)  # how often the driver looks at running cells
    folder: str | None = None  # worker specs, logs and submitit files; None: <out>/jobs
    requeues: int = checked(3, NON_NEGATIVE_INT)  # Slurm: requeues after preemption or timeout
    partition: str | None = None
    gpus_per_cell: int | None = checked(None, NON_NEGATIVE_INT)
    cpus_per_cell: int | None = checked(None, COUNT)
    mem_gb: float | None = checked(None, POSITIVE)
    time_min: int | None = checked(None, COUNT)  # each job's time limit (minutes)
    array_parallelism: int | None = checked(None, COUNT)  # Slurm array tasks running at once
    additional: dict[str, Any] | None = None  # further sbatch options, e.g. {account: my_lab}


TEACHER_KWARGS = {"cascades": 5, "convs": 5, "channels": 32, "in_channels": 1}  # D5C5
STUDENT_KWARGS = {"cascades": 5, "convs": 3, "channels": 32, "in_channels": 1}  # D3C5


@dataclass
class StudyMethod:
    """One row of the table: a label, the KD terms of its feature stage (followed by an L1-to-target
    stage, `StudyConfig.feature_epochs` + `task_epochs`), or a whole custom `stages` schedule."""

    label: str = ""
    kd: list[KDTermConfig] = field(default_factory=list)
    stages: list[StageConfig] | None = None


def paper_methods() -> list[StudyMethod]:
    """SFT-KD-Recon's five methods on KD-MRI's feature pairs (student conv2 <-> teacher conv3 of
    every cascade; the losses' default `pairs`). Weights bring each term to order 1 (with a
    feature-only stage, Adam makes the scale matter little)."""
    def term(name: str, weight: float = 1.0) -> KDTermConfig:
        return KDTermConfig(name=name, weight=weight)
    return [StudyMethod("FitNets", [term("hint")]), StudyMethod("AT", [term("attention", 1000.0)]),
            StudyMethod("CC", [term("correlation")]), StudyMethod("FSP", [term("fsp")]),
            StudyMethod("SP", [term("similarity", 1000.0)])]


class StudyFolders:
    """The output, cell-cache and jobs folders of a study or a front (`out_dir`, `name`,
    `cache_dir`, `executor.folder`)."""

    out_dir: str
    name: str
    cache_dir: str | None
    executor: ExecutorConfig

    @property
    def jobs_dir(self) -> Path:
        """Worker specs, cell logs and submitit files: `executor.folder` or `<out>/jobs`."""
        return Path(self.executor.folder) if self.executor.folder else self.out / "jobs"

    @property
    def out(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def cells_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else self.out / "cells"


@dataclass
class StudyConfig(StudyFolders):
    """Everything `mrdistill study` needs; see docs/study.md."""

    name: str = checked("study_sft", NAME)
    out_dir: str = "runs"
    # Trained runs ("cells"), each in a folder named by the hash of its config: reused when found,
    # so an interrupted study resumes and studies sharing a cache share their teachers.
    cache_dir: str | None = None  # None: <out_dir>/<name>/cells
    seed: int = checked(42, SEED)  # data, teachers
    seeds: list[int] = checked(factory=lambda: [42], check=each(SEED, min_length=1))  # one student run per seed (spread)
    device: str = "cpu"
    val_metric: str = "psnr"
    accelerations: list[float] = checked(factory=lambda: [4.0, 5.0], check=each(ACCELERATION, min_length=1))
    data: DataConfig = field(default_factory=lambda: DataConfig(image_size=128, slab=4))
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig("dccnn", dict(TEACHER_KWARGS)))
    student: ModelConfig = field(default_factory=lambda: ModelConfig("dccnn", dict(STUDENT_KWARGS)))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=1e-3, epochs=150, batch_size=4, step_size=40, gamma=0.1))
    # Epochs of both teachers (ordinary and SFT); None: optim.epochs. A teacher is trained once and
    # usually to convergence, so it may get a longer budget than the students.
    teacher_epochs: int | None = checked(None, EPOCHS)
    # SFT loss weights and branches; its `student` is always replaced by the study's `student`.
    sft: SFTConfig = field(default_factory=SFTConfig)
    # Start SFT-KD students from the SFT run's student branches (the paper: "all the blocks of the
    # student learn initial weights" during SFT); false: from scratch, like Std-KD students.
    sft_student_init: bool = True
    feature_epochs: int = checked(150, EPOCHS)
    task_epochs: int = checked(150, EPOCHS)
    # The epoch a feature stage keeps (`StageConfig.select`); None: its default, the lowest
    # validation value of its own loss. "val_metric" reproduces studies recorded before issue 18.
    feature_select: str | None = None
    methods: list[StudyMethod] = field(default_factory=paper_methods)
    only: list[str] | None = None  # run only these method labels (e.g. for a seed-spread run)
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim", "hfen", "vif", "nmse"])
    figure_method: str | None = None  # method shown in the figure panels (None: the first)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    progress: bool = True

    def active_methods(self) -> list[StudyMethod]:
        return [m for m in self.methods if self.only is None or m.label in self.only]


PRESETS: dict[str, dict[str, Any]] = {
    # Proves the plumbing end to end (every cell, table, CSV, figures) in well under 3 CPU minutes.
    "smoke": {
        # One test volume (slab 16): each cell's own report draws one figure, not two. The
        # architectures keep their depths (D5C5 -> D3C5) with 8 instead of 32 channels.
        "data": {"image_size": 48, "max_train_slices": 4, "max_eval_slices": 4, "slab": 16},
        "teacher": {"kwargs": {**TEACHER_KWARGS, "channels": 8}},
        "student": {"kwargs": {**STUDENT_KWARGS, "channels": 8}},
        "optim": {"epochs": 1, "batch_size": 4},
        "feature_epochs": 1, "task_epochs": 1,
    },
    # The largest grid that fits about half an hour on one shared CPU core (docs/results.md);
    # KD students get the plain student's 10 epochs: 2 feature + 8 L1-to-target.
    "cpu": {
        "data": {"image_size": 64, "max_train_slices": 40, "max_eval_slices": 32},
        "optim": {"epochs": 10, "batch_size": 4, "step_size": 7, "gamma": 0.3},
        "feature_epochs": 2, "task_epochs": 8,
    },
    # As `cpu`, but with a teacher that beats the student: residual cascades (Schlemper's DC-CNN,
    # same parameter counts), batch 2 (more steps for the compute) and teachers trained twice as
    # long as the students (docs/results.md, section 1, explains why).
    "cpu_residual": {
        "data": {"image_size": 64, "max_train_slices": 40, "max_eval_slices": 32},
        "teacher": {"kwargs": {**TEACHER_KWARGS, "residual": True}},
        "student": {"kwargs": {**STUDENT_KWARGS, "residual": True}},
        "optim": {"epochs": 20, "batch_size": 2, "step_size": 14, "gamma": 0.3},
        "teacher_epochs": 40, "feature_epochs": 4, "task_epochs": 16,
    },
}


def load_study_config(path: str | Path | None = None, preset: str | None = None,
                      overrides: list[str] | None = None) -> StudyConfig:
    """Defaults <- YAML file <- preset <- `--set` overrides -> a validated `StudyConfig`."""
    data: dict[str, Any] = load_yaml(path) if path is not None else {}
    if preset is not None:
        check_choice("study preset", preset, list(PRESETS))
        data = deep_merge(data, copy.deepcopy(PRESETS[preset]))
    apply_overrides(data, overrides or [])
    cfg = from_dict(StudyConfig, data, "study")
    validate(cfg)
    return cfg


def validate(cfg: StudyConfig) -> None:
    """Checks that need no data or model: labels, accelerations, seeds, metrics, epochs."""
    labels = [m.label for m in cfg.methods]
    if not labels or any(not label for label in labels) or len(set(labels)) != len(labels):
        raise MrdistillError(f"study.methods: every method needs a unique, non-empty label; "
                             f"got {labels}")
    for label in cfg.only or []:
        check_choice("study method", label, labels)
    if not cfg.active_methods():
        raise MrdistillError("study: no methods to run")
    for m in cfg.methods:
        if not m.kd and not m.stages:
            raise MrdistillError(f"study method {m.label!r}: give its feature-stage `kd` terms "
                                 f"or `stages`")
    if cfg.figure_method is not None:
        check_choice("figure method", cfg.figure_method, [m.label for m in cfg.active_methods()])
    if cfg.feature_select is not None:
        check_choice("study.feature_select", cfg.feature_select, STAGE_SELECTIONS)
    if not cfg.accelerations or any(a <= 1 for a in cfg.accelerations):
        raise MrdistillError(f"study.accelerations must be > 1, got {cfg.accelerations}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise MrdistillError(f"study.seeds must be a non-empty list of distinct seeds, got {cfg.seeds}")
    if cfg.teacher_epochs is not None and cfg.teacher_epochs < 1:
        raise MrdistillError(f"study.teacher_epochs must be >= 1 (or null), got {cfg.teacher_epochs}")
    for name in cfg.metrics:
        check_choice("metric", name, list(METRICS))
    if "psnr" not in cfg.metrics:
        raise MrdistillError("study.metrics must include psnr (the teacher-student gap is in dB)")
    if min(cfg.feature_epochs, cfg.task_epochs, cfg.optim.epochs) < 1:
        raise MrdistillError("study epochs (optim.epochs, feature_epochs, task_epochs) must be >= 1")


def save_study_config(cfg: StudyConfig, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
