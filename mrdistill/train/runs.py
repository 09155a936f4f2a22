"""`train` and `distill` runs: config -> data, models, objective -> `fit` -> test report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from mrdistill.config import MaskConfig, RunConfig, StageConfig, load_yaml, save_config, to_dict
from mrdistill.data.datasets import MixedDataset, SliceDataset, check_coils
from mrdistill.data.build import make_task_datasets
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.distill.teacher_correction import TeacherCorrectionObjective
from mrdistill.distill.init import init_from_teacher
from mrdistill.device import resolve_device
from mrdistill.distill.teacher_cache import TeacherCache, cache_allowed
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models import build_model
from mrdistill.models.foreign import import_plugins
from mrdistill.models.registry import check_model_kwargs
from mrdistill.models.upsampling import check_model_data
from mrdistill.models.vdsr import Bicubic
from mrdistill.physics.masks import make_mask
from mrdistill.rundir import OutputDir, committing, open_output
from mrdistill.train import distributed
from mrdistill.train.checkpoint import (data_meta, load_checkpoint, load_model, model_payload,
                                        save_checkpoint)
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.logging import check_tensorboard
from mrdistill.train.loop import FitResult, fit
from mrdistill.train.plan import run_plan
from mrdistill.train.precision import check_precision
from mrdistill.train.splits import record_splits
from mrdistill.train.preflight import check_model_for_data
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


def validate_run(cfg: RunConfig) -> None:
    """Checks that need no data, run before the run folder is claimed: every model's arguments
    against its constructor's signature and its own checks, and against the data
    (`preflight.check_model_for_data`)."""
    check_model_kwargs(cfg.model.name, cfg.model.kwargs, "model.kwargs")
    if cfg.data.dataset == "embedded":
        check_coils(cfg.data)  # the data's own needs first (coils need complex images)
    check_model_for_data(cfg.model.name, cfg.model.kwargs, cfg.data, "model.kwargs")
    if cfg.sft is not None:
        check_model_kwargs(cfg.sft.student.name, cfg.sft.student.kwargs, "sft.student.kwargs")
        check_model_for_data(cfg.sft.student.name, cfg.sft.student.kwargs, cfg.data, "sft.student.kwargs")
    if cfg.data.dataset == "embedded" and cfg.data.superres is None:
        check_mask(cfg.data.mask, cfg.data.image_size)
    for i, stage in enumerate(cfg.distill.stages if cfg.distill is not None else []):
        for j, term in enumerate(stage.kd):
            try:
                build_kd(term.name, **term.kwargs)
            except (MrdistillError, TypeError) as exc:
                raise MrdistillError(f"distill.stages[{i}].kd[{j}]: {exc}") from None


def check_mask(mask: MaskConfig, size: int, where: str = "data.mask") -> None:
    """Draw the configured mask once for a size x size image: a mask that samples nothing (an
    acceleration above the width, an all-zero file) or cannot be drawn fails here, key named."""
    try:
        make_mask(mask.kind, (size, size), mask.acceleration, seed=0, path=mask.path,
                  center_fraction=mask.center_fraction, center_lines=mask.center_lines)
    except MrdistillError as exc:
        raise MrdistillError(f"{where}: {exc}") from None


def run_inputs(cfg: RunConfig) -> list[str]:
    """Files and folders a run reads (an `--overwrite` never replaces a folder holding one)."""
    paths = [cfg.data.path] if cfg.data.dataset != "embedded" else []
    if cfg.distill is not None:
        teacher = cfg.distill.teacher
        paths += [teacher if isinstance(teacher, str) else teacher.weights, cfg.distill.init]
    return [p for p in paths + [cfg.init] if p]


@contextmanager
def claim_run(cfg: RunConfig, overwrite: bool, command: str,
              resume: bool = False) -> Iterator[OutputDir]:
    """Claim the run directory (`rundir.open_output`: the old one is restored if the run fails
    before `commit`) and save the resolved config in it; with `resume` an interrupted run's folder
    is reused and its saved config must match (`check_same_config`). Under torchrun rank 0 claims
    while the other ranks wait (its error is raised on every rank); they write nothing, and their
    handle's commit/abort do nothing."""
    check_precision(cfg.optim.precision, cfg.device)

    def open_run() -> OutputDir:
        out = open_output(cfg.run_dir, overwrite=overwrite, resume=resume, resumable=True,
                          inputs=run_inputs(cfg), command=command)
        try:
            saved = out.path / "config.yaml"
            if resume and saved.is_file():
                check_same_config(cfg, saved)
            else:
                save_config(cfg, saved)
        except BaseException:
            out.abort()
            raise
        return out

    out = distributed.on_main(open_run, distributed.context(cfg.device))
    if out is None:  # not rank 0
        out = OutputDir(cfg.run_dir, None, created=False, reused=True)
    with committing(out):
        yield out


def load_init(cfg: RunConfig) -> dict[str, Any] | None:
    """The start weights of the run's model: `init` (any run) or `distill.init` (a distilled
    student), a checkpoint of the model's own name and kwargs; None when neither is set."""
    student_init = cfg.distill.init if cfg.distill is not None else None
    if cfg.init and student_init:
        raise MrdistillError(f"init ({cfg.init}) and distill.init ({student_init}) both name the "
                             f"student's start weights: keep one")
    key, path = ("init", cfg.init) if cfg.init else ("distill.init", student_init)
    if not path:
        return None
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] != cfg.model.name or ckpt["model_kwargs"] != cfg.model.kwargs:
        raise MrdistillError(f"{key}: {path} holds {ckpt['model_name']} {ckpt['model_kwargs']}, "
                             f"not the model {cfg.model.name} {cfg.model.kwargs}")
    return ckpt["model"]


def config_difference(cfg: RunConfig, saved: Path) -> str | None:
    """The first key at which `cfg` differs from the config saved at `saved` (but for
    `RESUME_FREE_KEYS`), or None when they are the same run."""
    old, new = load_yaml(saved), to_dict(cfg)
    for key in RESUME_FREE_KEYS:
        *parents, last = key.split(".")
        for tree in (old, new):
            for part in parents:
                tree = tree.get(part) if isinstance(tree, dict) else None
            if isinstance(tree, dict):
                tree.pop(last, None)
    return None if old == new else _first_difference(old, new)


def check_same_config(cfg: RunConfig, saved: Path) -> None:
    """A resumed run must be the run that was interrupted: its config (but for `RESUME_FREE_KEYS`)
    equals the saved one; the first differing key is named."""
    key = config_difference(cfg, saved)
    if key is not None:
        raise MrdistillError(f"--resume: the config differs from the interrupted run's ({saved}) at "
                             f"{key!r}; resume with the same config, or start again with --overwrite")


def _first_difference(a: object, b: object, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
    return where or "config"


def prepare_run(cfg: RunConfig, overwrite: bool, resume: bool) -> RunConfig:
    """Checks that need nothing written (options, device, TensorBoard, plugins, models), then join
    torchrun's job -> the config with the device resolved (a bare "cuda" stays bare: under
    torchrun each rank takes its own GPU)."""
    if resume and overwrite:
        raise MrdistillError("--resume continues a run and --overwrite replaces it; pass only one")
    device = resolve_device(cfg.device)
    bare = device.type == "cuda" and cfg.device in ("auto", "cuda")
    cfg = replace(cfg, device="cuda" if bare else str(device))
    if cfg.logging.tensorboard:
        check_tensorboard()
    distributed.context(cfg.device)  # under torchrun: join the job (and pick this rank's GPU) first
    import_plugins(cfg.plugins)  # plugin models must be registered before checks
    validate_run(cfg)
    return cfg


@contextmanager
def run_state(cfg: RunConfig, out: OutputDir, resume: bool) -> Iterator[RunState]:
    """The run's state in its claimed folder (from `last.pt` with `resume`); the log is closed at
    the end."""
    run = RunState.open(out.path, resume, cfg.logging.tensorboard)
    try:
        yield run
    finally:
        run.log.close()


def build_objective(stage: StageConfig, teacher: nn.Module | None,
                    loss: str | dict = "l1", cache: TeacherCache | None = None) -> DistillObjective:
    """The objective of one stage: task term (`loss`, from optim.loss) plus the stage's weighted
    KD terms (the frozen teacher's outputs from `cache` when given; a teacher that learns never
    uses one)."""
    terms = {}
    for i, term in enumerate(stage.kd):
        key = term.name if term.name not in terms else f"{term.name}{i}"
        terms[key] = (build_kd(term.name, **term.kwargs), term.weight)
    if stage.teacher_correction is not None:  # the teacher learns while teaching
        assert teacher is not None
        return TeacherCorrectionObjective(teacher, terms, stage.task_weight, stage.teacher_correction,
                                          loss=loss)
    return DistillObjective(teacher, terms, task_weight=stage.task_weight, loss=loss, cache=cache)


TEACHER_ROW = "teacher"  # the teacher's row in a distillation's report


def baseline_for(cfg: RunConfig) -> tuple[str, nn.Module | None]:
    """The reference row of a report: bicubic interpolation for super-resolution, zero filling
    (model None) for reconstruction."""
    sr = cfg.data.superres
    return ("bicubic", Bicubic(sr.scale)) if sr is not None else ("zero-filled", None)


def _record_splits(run_dir: Path, data: dict[str, SliceDataset]) -> None:
    """splits.json: the volumes of train/val/test (`train.splits`), for `--split`."""
    if distributed.is_main():  # under torchrun rank 0 writes
        record_splits(run_dir, data)


def planned_epochs(cfg: RunConfig) -> list[int]:
    """The epochs each stage of the run plans: a distillation's stages their own, else
    `optim.epochs` (one stage)."""
    if cfg.distill is not None and cfg.distill.stages:
        return [stage.epochs for stage in cfg.distill.stages]
    return [cfg.optim.epochs]


def _test_report(cfg: RunConfig, run_dir: Path, model: nn.Module, test: SliceDataset,
                 title: str, teacher: nn.Module | None = None) -> str:
    """The test-set report: the baseline, the teacher (of a distillation; on the same data) and
    the run's model."""
    if not distributed.is_main():
        return ""  # under torchrun rank 0 evaluates and writes
    baseline, base_model = baseline_for(cfg)
    rows = {baseline: base_model, **({TEACHER_ROW: teacher} if teacher is not None else {}), cfg.name: model}
    ev = evaluate_models(rows, test, cfg.device)
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
              datasets: dict[str, SliceDataset] | None = None, resume: bool = False) -> RunResult:
    """Supervised training of `cfg.model` (a teacher or a plain student); self-supervised (no
    targets, see `train.unsupervised`) when the config has a `selfsup` section. `resume`
    continues an interrupted run from its `last.pt` (a fresh start when there is none)."""
    if cfg.selfsup is not None:  # the method's own data needs first (e.g. complex data)
        check_selfsup(cfg.selfsup, cfg.data)
    if cfg.init and (cfg.selfsup is not None or cfg.sft is not None):
        raise MrdistillError("init starts a supervised model or a distilled student; it does not "
                             "apply to selfsup or sft training (remove init)")
    cfg = prepare_run(cfg, overwrite, resume)
    init = load_init(cfg)
    with claim_run(cfg, overwrite, "train", resume) as out, run_state(cfg, out, resume) as run:
        return _train(cfg, out, run, datasets, init)


def _train(cfg: RunConfig, out: OutputDir, run: RunState,
           datasets: dict[str, SliceDataset] | None, init: dict[str, Any] | None) -> RunResult:
    run_dir = out.path
    data = datasets or make_task_datasets(cfg.data, cfg.seed)
    _record_splits(run_dir, data)
    if cfg.selfsup is not None:
        out.commit()
        model, fits, table = selfsup_train(cfg, run, data)
        return RunResult(run_dir, model, fits, table)
    if cfg.sft is not None:  # a student-friendly teacher, trained with student branches
        out.commit()
        model, fits, table = sft_train(cfg, run, data)
        return RunResult(run_dir, model, fits, table)
    model = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
    if init is not None:  # fine-tuning (a resumed run then restores its own last.pt over it)
        model.load_state_dict(init)
    check_model_data(model, cfg.data)
    out.commit()  # the new run has started: a replaced run folder is removed now
    result = fit(model, DistillObjective(loss=cfg.optim.loss), data["train"], data["val"], run_plan(cfg, "train"), run)
    table = _test_report(cfg, run_dir, model, data["test"], f"{cfg.name}: test set")
    return RunResult(run_dir, model, [result], table)


def distill_run(cfg: RunConfig, overwrite: bool = False,
                datasets: dict[str, SliceDataset] | None = None,
                teacher: nn.Module | None = None, resume: bool = False) -> RunResult:
    """Distil `cfg.distill.teacher` into `cfg.model`, stage by stage (each stage restores the epoch
    its `select` rule keeps: by default the best validation metric with a task term, else the lowest
    validation value of the stage's own objective);
    without targets from a teacher ensemble when the config has `distill.adaptive`. `resume`
    continues an interrupted run inside the stage it was in."""
    adaptive = cfg.distill.adaptive if cfg.distill is not None else None
    if cfg.distill is None or not (cfg.distill.stages or adaptive):
        raise MrdistillError("distill needs a 'distill' section with at least one stage")
    if adaptive is not None and cfg.distill.stages:
        raise MrdistillError("distill.adaptive replaces distill.stages; remove one of them")
    cfg = prepare_run(cfg, overwrite, resume)
    if teacher is None:
        teacher = load_teacher(cfg.distill.teacher, cfg.device)
    if adaptive is not None:
        check_adaptive(adaptive, teacher, cfg.data.mode)
    init = load_init(cfg)
    with claim_run(cfg, overwrite, "distill", resume) as out, run_state(cfg, out, resume) as run:
        return _distill(cfg, out, run, datasets, teacher, init)


def _distill(cfg: RunConfig, out: OutputDir, run: RunState, datasets: dict[str, SliceDataset] | None,
             teacher: nn.Module, init: dict[str, Any] | None) -> RunResult:
    """The stages of `distill_run` (finished ones are skipped when the run resumes)."""
    assert cfg.distill is not None
    run_dir, adaptive = out.path, cfg.distill.adaptive
    data = datasets or make_task_datasets(cfg.data, cfg.seed)
    _record_splits(run_dir, data)
    if adaptive is not None:
        out.commit()
        student, fits, table = adaptive_distill(cfg, run, data, teacher, init)
        return RunResult(run_dir, student, fits, table)
    student = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
    if init is not None:
        student.load_state_dict(init)
    if cfg.distill.init_from_teacher is not None:
        check_choice("student initialisation", cfg.distill.init_from_teacher, ("teacher_layers",))
        init_from_teacher(student, teacher)
    check_model_data(student, cfg.data, "student")
    check_model_data(teacher, cfg.data, "teacher")
    out.commit()  # the new run has started: a replaced run folder is removed now
    # Undersampled-only slices (if any) are labelled by the teacher: the student sees them too.
    train_set = MixedDataset(data["train"], data["unlabeled"]) if "unlabeled" in data else data["train"]
    fits = []
    use_cache = cache_allowed(cfg.distill.cache_teacher, cfg.data, "distill.cache_teacher")
    cache, cached_for = None, None  # one cache per teacher (a corrected teacher gets a new one)
    for k, stage in enumerate(cfg.distill.stages):
        done = run.completed_fit(k)
        if done is not None:  # finished before the checkpoint this run resumed from
            fits.append(done)
            continue
        if any(s.teacher_correction is not None for s in cfg.distill.stages[:k]):
            run.carry("teacher", teacher)  # corrected earlier: a resumed run gets its weights back
        if use_cache and stage.teacher_correction is None and cached_for is not teacher:
            cache, cached_for = TeacherCache(), teacher
        objective = build_objective(stage, teacher, cfg.optim.loss,
                                    cache if stage.teacher_correction is None else None)
        plan = run_plan(cfg, f"stage{k + 1}", seed=cfg.seed + k, epochs=stage.epochs, lr=stage.lr,
                        max_steps=stage.max_steps, select=stage.selection)
        fits.append(fit(student, objective, train_set, data["val"], plan, run))
        if isinstance(objective, TeacherCorrectionObjective):
            teacher = run.carry("teacher", objective.teacher)  # later stages learn from it
            _save_corrected_teacher(cfg, run_dir, teacher, k + 1)
    table = _test_report(cfg, run_dir, student, data["test"], f"{cfg.name}: test set", teacher)
    return RunResult(run_dir, student, fits, table)

