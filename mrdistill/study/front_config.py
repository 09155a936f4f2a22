"""The quality-speed front's typed config (defaults live here; configs/front_dccnn.yaml is them).

A front trains one teacher and, for every student size, a plain student and one distilled student
per KD recipe, each over several seeds; all are scored on the students' test set and timed. The
teacher may see other data than the students (`teacher_data`, merged over `data`): a teacher from
a public data set with many fully sampled slices, a site with few of them and many
undersampled-only slices (`data.labeled_train_slices`), which the distilled students see through
the teacher.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mrdistill.atomic import atomic_write_text
from mrdistill.config import (DataConfig, KDTermConfig, ModelConfig, OptimConfig, StageConfig,
                              apply_overrides, deep_merge, from_dict, load_yaml, to_dict)
from mrdistill.config.checks import NAME, NON_NEGATIVE, SEED, checked, each, integer, one_of
from mrdistill.data.teacher_data import merged_data
from mrdistill.deploy.backends import BACKENDS
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.eval.metrics import METRICS
from mrdistill.study.config import ExecutorConfig, StudyFolders, StudyMethod

# KD-MRI's DC-CNN in real 1-channel mode with residual cascades, as the demo trains it (D5C5).
FRONT_TEACHER = {"cascades": 5, "convs": 5, "channels": 32, "in_channels": 1, "residual": True}


def _dccnn(convs: int, channels: int) -> FrontStudent:
    return FrontStudent("dccnn", {**FRONT_TEACHER, "convs": convs, "channels": channels})


@dataclass
class FrontStudent:
    """One student size: a registered model and its arguments; `label` names its rows (default:
    the model and the arguments that differ from the teacher's, e.g. `dccnn(convs=3,channels=16)`)."""

    name: str = checked("dccnn", NAME)
    kwargs: dict[str, Any] = checked(factory=dict)
    label: str = ""


def default_students() -> list[FrontStudent]:
    """From about 1.8x to about 39x fewer FLOPs than D5C5 (the ratios are printed in front.md)."""
    return [_dccnn(5, 24), _dccnn(3, 32), _dccnn(3, 24), _dccnn(3, 16), _dccnn(3, 12), _dccnn(3, 8)]


def imitation_recipe() -> list[StudyMethod]:
    """One stage: L1 to the target where there is one, plus L1 imitation of the teacher (weight
    1) on every slice, the undersampled-only ones included."""
    stage = StageConfig(epochs=1, task_weight=1.0, kd=[KDTermConfig(name="imitation", weight=1.0)])
    return [StudyMethod("KD", stages=[stage])]


@dataclass
class LatencyConfig:
    """How each size is timed (`deploy.benchmark` on test-sized inputs, interleaved rounds). A
    backend a model does not support (`fast` off DC-CNN, `onnxruntime` off the exportable models
    or without the `export` extra) is "n/a" in its row."""

    backends: list[str] = checked(factory=lambda: ["eager", "fast", "onnxruntime"],
                                  check=each(one_of(*BACKENDS), min_length=1))
    batch: int = checked(1, integer(ge=1, le=64))  # slices per timed call
    repeats: int = checked(7, integer(ge=1, le=10_000))


@dataclass
class FrontConfig(StudyFolders):
    """Everything a front needs; see docs/study.md ("The quality-speed front")."""

    name: str = checked("front_dccnn", NAME)
    out_dir: str = "runs"
    cache_dir: str | None = None  # None: <out_dir>/<name>/cells (shared with the SFT study's cells)
    seed: int = checked(42, SEED)  # data and teacher
    seeds: list[int] = checked(factory=lambda: [42, 43, 44], check=each(SEED, min_length=1))
    device: str = "cpu"
    val_metric: str = "psnr"
    # The demo's quick data (96 px, slab 4, 80 training slices), at a site with 10 fully sampled
    # training slices; the others are undersampled-only.
    data: DataConfig = field(default_factory=lambda: DataConfig(
        image_size=96, slab=4, max_train_slices=80, max_eval_slices=32, labeled_train_slices=10))
    # Overrides of `data` for the teacher only (merged key by key), e.g. more labelled slices.
    teacher_data: dict[str, Any] = field(default_factory=lambda: {"labeled_train_slices": 40})
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig("dccnn", dict(FRONT_TEACHER)))
    teacher_optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=1e-3, epochs=60, batch_size=2, step_size=40, gamma=0.3, channels_last=False))
    # Plain students; a distilled student gets the same number of optimizer steps (its recipe's
    # stage `epochs` are shares of that budget) and the same learning-rate decay point. 1,200 steps
    # on 10 slices: where distillation measured +0.45 dB (benchmarks/results/kd_site.md), against
    # +0.16 at 600. NCHW, as the recorded fronts were trained (`auto` changes float rounding).
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=1e-3, epochs=240, batch_size=2, step_size=160, gamma=0.3, channels_last=False))
    students: list[FrontStudent] = field(default_factory=default_students)
    # KD recipes, each a line of the front: a label and its `stages` (or `kd` terms: one stage of
    # task L1 plus those terms).
    recipes: list[StudyMethod] = field(default_factory=imitation_recipe)
    delta: float = checked(0.3, NON_NEGATIVE)  # dB below the teacher that still counts as "as good"
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim"])
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    plugins: list[str] = field(default_factory=list)  # modules registering plugin models
    progress: bool = True


def teacher_data_config(cfg: FrontConfig) -> DataConfig:
    """`data` with `teacher_data` merged over it (the teacher's own data), checked."""
    return merged_data(cfg.data, cfg.teacher_data, "front.teacher_data")


def student_label(student: FrontStudent, teacher: ModelConfig) -> str:
    """The student's label, or its model and the arguments that differ from the teacher's."""
    if student.label:
        return student.label
    same = student.name == teacher.name
    differ = {k: v for k, v in student.kwargs.items() if not same or teacher.kwargs.get(k) != v}
    return student.name + ("(" + ",".join(f"{k}={v}" for k, v in differ.items()) + ")" if differ else "")


def recipe_stages(recipe: StudyMethod) -> list[StageConfig]:
    """A recipe's stages: its own, or one stage of task L1 plus its `kd` terms."""
    if recipe.stages:
        return copy.deepcopy(recipe.stages)
    return [StageConfig(epochs=1, task_weight=1.0, kd=copy.deepcopy(recipe.kd))]


def validate_front(cfg: FrontConfig) -> None:
    """Checks that need no data or model: students, recipes, seeds, metrics, delta."""
    if not cfg.students:
        raise MrdistillError("front.students: the list is empty; give at least one student model")
    labels = [student_label(s, cfg.teacher) for s in cfg.students]
    if len(set(labels)) != len(labels):
        raise MrdistillError(f"front.students: two students have the same label; got {labels}")
    recipes = [r.label for r in cfg.recipes]
    if any(not r for r in recipes) or len(set(recipes)) != len(recipes) or "plain" in recipes:
        raise MrdistillError(f"front.recipes: every recipe needs a unique, non-empty label other "
                             f"than 'plain'; got {recipes}")
    for r in cfg.recipes:
        if not r.kd and not r.stages:
            raise MrdistillError(f"front recipe {r.label!r}: give its `stages` or `kd` terms")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise MrdistillError(f"front.seeds must be distinct, got {cfg.seeds}")
    if cfg.delta < 0:
        raise MrdistillError(f"front.delta must be >= 0 dB, got {cfg.delta}")
    for name in cfg.metrics:
        check_choice("metric", name, list(METRICS))
    if "psnr" not in cfg.metrics:
        raise MrdistillError("front.metrics must include psnr (the front is drawn in dB)")
    if "eager" not in cfg.latency.backends:
        raise MrdistillError("front.latency.backends must include eager (the figure's time axis)")
    teacher_data_config(cfg)


def is_front(path: str | Path | None, overrides: list[str]) -> bool:
    """A study config (file or `--set`) with a `students` list describes a front."""
    keys = {item.split("=", 1)[0].strip().split(".")[0] for item in overrides}
    return "students" in keys or (path is not None and "students" in load_yaml(path))


def load_front_config(path: str | Path | None = None, preset: str | None = None,
                      overrides: list[str] | None = None) -> FrontConfig:
    """Defaults <- YAML file <- the file's preset (`presets:`) <- `--set` overrides -> a validated
    `FrontConfig`."""
    data: dict[str, Any] = load_yaml(path) if path is not None else {}
    presets = data.pop("presets", None) or {}
    if preset is not None:
        if preset not in presets:
            valid = ", ".join(sorted(presets)) or "(none defined)"
            raise MrdistillError(f"{path or 'the config'} has no preset {preset!r}; valid: {valid}")
        data = deep_merge(data, copy.deepcopy(presets[preset]))
    apply_overrides(data, overrides or [])
    cfg = from_dict(FrontConfig, data, "front")
    validate_front(cfg)
    return cfg


def save_front_config(cfg: FrontConfig, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))

