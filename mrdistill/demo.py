"""The whole story on embedded real data: teacher, plain student, distilled student, one table.

Presets are overrides of the config dataclasses (defaults live there): `smoke` proves the pipeline in
under a minute, `quick` is what `make demo` runs on a 2-core CPU, `full` is KD-MRI's recipe for a GPU.
`quick` is the site of the quality-speed front where distillation paid most (docs/results.md,
benchmarks/results/front_dccnn.md): a teacher trained on more fully sampled slices than the site
has, a student site with 10 fully sampled slices and many undersampled-only ones. Every preset
trains on the broad sources (`data.sources.BROAD`: the template and real single-subject volumes)
and scores its models on the held-out real images too (`train.heldout`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collections.abc import Sequence

from mrdistill.config import DataConfig, RunConfig, apply_overrides, from_dict, save_config, to_dict
from mrdistill.data.build import make_datasets
from mrdistill.data.sources import BROAD
from mrdistill.data.teacher_data import merged_data, teacher_datasets
from mrdistill.device import resolve_device
from mrdistill.config.checks import SEED, check_value
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.eval.report import summarise
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.heldout import write_heldout
from mrdistill.rundir import open_output
from mrdistill.train.budget import matched_budget
from mrdistill.train.runs import check_mask, distill_run, train_run


def dccnn(size: dict[str, int], residual: bool) -> dict[str, Any]:
    """KD-MRI's DC-CNN in real 1-channel mode; size: {"convs", "channels"} (5 cascades).
    D5C5 at 32 channels is KD-MRI's teacher, D3C5 at 32 its student."""
    return {"name": "dccnn", "kwargs": {"cascades": 5, **size, "in_channels": 1, "residual": residual}}


TEACHER = {"convs": 5, "channels": 32}
# KD-MRI's student, the demo's: on the front (benchmarks/results/front_dccnn.md) the smallest size
# where distillation recovers half the gap to the teacher, 2.9x fewer FLOPs. The 1.8x student
# gains more but runs barely faster than the teacher in eager mode (24 channels) and would push
# `make demo` past its 10 minutes.
KDMRI_STUDENT = {"convs": 3, "channels": 32}


# KD-MRI's schedule: stage 1 attention transfer only; stage 2 alpha*L1(target) + (1-alpha)*imitation.
def kdmri_stages(at_epochs: int, kd_epochs: int, alpha: float, at_weight: float) -> list[dict[str, Any]]:
    return [
        {"epochs": at_epochs, "task_weight": 0.0,
         "kd": [{"name": "attention", "weight": at_weight}]},
        {"epochs": kd_epochs, "task_weight": alpha,
         "kd": [{"name": "imitation", "weight": 1.0 - alpha}]},
    ]


# The site recipe, the front's default (configs/front_dccnn.yaml): one stage of L1 to the target
# where there is one plus imitation of the teacher on every slice, including the undersampled-only
# slices no plain student can use. With step matching `epochs` is a share of the plain budget. An
# attention stage first did not add to it (docs/results.md section 1).
SITE_STAGES = [{"epochs": 1, "task_weight": 1.0, "kd": [{"name": "imitation", "weight": 1.0}]}]

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "data": {"sources": list(BROAD), "image_size": 48, "max_train_slices": 12, "max_eval_slices": 6,
                 "labeled_train_slices": 6},
        "teacher_data": {"labeled_train_slices": 12},
        "residual": True, "match_steps": True,
        "teacher_model": TEACHER, "student_model": KDMRI_STUDENT,
        "teacher": {"epochs": 2, "batch_size": 2},
        "student": {"epochs": 4, "batch_size": 2},
        "stages": SITE_STAGES,
    },
    "quick": {
        "data": {"sources": list(BROAD), "image_size": 96, "max_train_slices": 80, "max_eval_slices": 32,
                 "slab": 4, "labeled_train_slices": 10},
        "teacher_data": {"labeled_train_slices": 40},  # the teacher's larger collection
        "residual": True, "match_steps": True,
        "teacher_model": TEACHER, "student_model": KDMRI_STUDENT,
        # NCHW, as the recorded demo table (docs/demo.md) was trained: `optim.channels_last: auto`
        # would change its numbers by float rounding.
        "teacher": {"epochs": 60, "batch_size": 2, "step_size": 40, "gamma": 0.3, "channels_last": False},
        # 1,200 steps on the 10 fully sampled slices (the front's budget).
        "student": {"epochs": 240, "batch_size": 2, "step_size": 160, "gamma": 0.3, "channels_last": False},
        "stages": SITE_STAGES,
    },
    "full": {  # KD-MRI's paper recipe (all slices labelled, no residual, two stages); for a GPU
        "data": {"sources": list(BROAD), "image_size": 160, "slab": 4},
        "teacher_data": {},
        "residual": False, "match_steps": False,
        "teacher_model": TEACHER, "student_model": KDMRI_STUDENT,
        "teacher": {"epochs": 150, "batch_size": 4, "step_size": 40, "gamma": 0.1},
        "student": {"epochs": 150, "batch_size": 4, "step_size": 40, "gamma": 0.1},
        "stages": kdmri_stages(50, 150, alpha=0.5, at_weight=1000.0),
    },
}


@dataclass
class DemoResult:
    out: Path
    table: str
    seconds: float


def demo_data(preset: str, acceleration: float, overrides: Sequence[str] = ()) -> DataConfig:
    """The data config of a preset at the given acceleration, with `data.`-keyed `--set`
    overrides (e.g. `data.sources=[mni,dipy_piesno]`, `data.augment.enabled=true`) on top."""
    check_choice("preset", preset, list(PRESETS))
    if acceleration <= 1:
        raise MrdistillError(f"acceleration must be > 1, got {acceleration}")
    data = copy.deepcopy(PRESETS[preset]["data"])
    data["mask"] = {"acceleration": float(acceleration)}
    if not overrides:
        return from_dict(DataConfig, data, f"preset {preset}.data")
    for item in overrides:
        if not item.strip().startswith("data."):
            raise MrdistillError(f"demo --set changes the data config only (data.KEY=VALUE), got {item!r}")
    full = {"data": to_dict(from_dict(DataConfig, data, f"preset {preset}.data"))}
    return from_dict(DataConfig, apply_overrides(full, list(overrides))["data"], "data")


def teacher_data_of(preset: str, data: DataConfig) -> DataConfig:
    """The teacher's data config: the students' `data` with the preset's `teacher_data` over it."""
    return merged_data(data, PRESETS[preset]["teacher_data"], f"preset {preset}.teacher_data")


def demo_configs(preset: str, out: Path, data: DataConfig, seed: int, device: str, progress: bool,
                 labeled: int, seen: int) -> dict[str, RunConfig]:
    """The three run configs (teacher, student, distilled) of a preset.

    labeled: training slices with a target; seen: all training slices the distilled student sees.
    The teacher trains on `teacher_data_of(preset, data)`.
    """
    p = PRESETS[preset]
    common = {"out_dir": str(out), "seed": seed, "device": device, "progress": progress,
              "data": to_dict(data)}
    student_optim = dict(p["student"])
    stages = copy.deepcopy(p["stages"])
    if p["match_steps"]:
        stages, distill_optim = matched_budget(stages, student_optim, labeled, seen)
    else:
        distill_optim = student_optim
    teacher_ckpt = str(out / "teacher" / "checkpoints" / "best.pt")
    cfgs = {
        "teacher": {**common, "name": "teacher", "model": dccnn(p["teacher_model"], p["residual"]),
                    "optim": p["teacher"], "data": to_dict(teacher_data_of(preset, data))},
        "student": {**common, "name": "student", "model": dccnn(p["student_model"], p["residual"]),
                    "optim": student_optim},
        "distilled": {**common, "name": "distilled", "model": dccnn(p["student_model"], p["residual"]),
                      "optim": distill_optim,
                      # Fixed inputs (no fresh masks, no augmentation): the frozen teacher runs
                      # once per slice instead of once per step.
                      "distill": {"teacher": teacher_ckpt, "stages": stages, "cache_teacher":
                                  not (data.mask.fresh_train_masks or data.augment.enabled)}},
    }
    return {k: from_dict(RunConfig, copy.deepcopy(v), f"preset {preset}.{k}") for k, v in cfgs.items()}


def run_demo(preset: str = "quick", out: str | Path = "runs/demo", acceleration: float = 4.0,
             seed: int = 42, device: str = "auto", overwrite: bool = False,
             progress: bool = True, resume: bool = False,
             data_overrides: Sequence[str] = ()) -> DemoResult:
    """Train teacher and student, distil, and write `report.md`, tables and figures into `out`.

    `resume` continues an interrupted demo: finished runs are only evaluated again, the
    interrupted one continues from its last checkpoint. `data_overrides`: see `demo_data`."""
    start = time.perf_counter()
    out = Path(out)
    data_cfg = demo_data(preset, acceleration, data_overrides)
    device = str(resolve_device(device))
    check_value(SEED, seed, "--seed")
    check_mask(data_cfg.mask, data_cfg.image_size, "--acceleration")
    if resume and overwrite:
        raise MrdistillError("--resume continues a run and --overwrite replaces it; pass only one")
    folder = open_output(out, overwrite=overwrite, resume=resume, resumable=True, command="demo")
    teacher_cfg = teacher_data_of(preset, data_cfg)
    try:
        data = make_datasets(data_cfg, seed)
        teacher_data = teacher_datasets(data, data_cfg, teacher_cfg, seed, f"preset {preset}.teacher_data")
    except BaseException:
        folder.abort()  # the folder it replaced (if any) comes back
        raise
    folder.commit()
    labeled, unlabeled = len(data["train"]), len(data.get("unlabeled", []))
    cfgs = demo_configs(preset, out, data_cfg, seed, device, progress, labeled, labeled + unlabeled)
    for name, cfg in cfgs.items():
        save_config(cfg, out / f"{name}.yaml")
    # Each run owns its folder under `out` (claimed above): a fresh demo replaces them.
    fresh = not resume
    teacher = train_run(cfgs["teacher"], overwrite=fresh, datasets=teacher_data, resume=resume).model
    student = train_run(cfgs["student"], overwrite=fresh, datasets=data, resume=resume).model
    distilled = distill_run(cfgs["distilled"], overwrite=fresh, datasets=data, teacher=teacher,
                            resume=resume).model
    ev = evaluate_models({"zero-filled": None, "teacher": teacher, "student": student,
                          "distilled": distilled}, data["test"], device, time_fast_path=True)
    table = summarise(ev.per_volume)  # model -> metric -> (mean, 2 sd), as the table shows
    # Beyond the corpus: real images no recipe trains on (anatomy, contrast, field of view).
    heldout_line = write_heldout(out / "heldout", {"teacher": teacher, "student": student,
                                                   "distilled": distilled}, data_cfg, acceleration, seed, device)
    notes = [
        f"preset `{preset}`, acceleration {acceleration:g}x ({data_cfg.mask.kind} mask), seed {seed}, "
        f"device {device}",
        f"data: {', '.join(data_cfg.sources)} at {data_cfg.image_size}px; {labeled} fully sampled "
        f"training slices" + (f" + {unlabeled} undersampled-only ones (seen only by the distilled "
                               f"student, through the teacher)" if unlabeled else "")
        + f"; {len(data['val'])} val / {len(data['test'])} test slices",
        f"teacher: {len(teacher_data['train'])} fully sampled training slices"
        + (" (its own, larger collection: the preset's teacher_data)" if teacher_data is not data else ""),
        *([f"training-slice augmentation (data.augment): {to_dict(data_cfg.augment)}"]
          if data_cfg.augment.enabled else []),
        "teacher, student and distilled configs: teacher.yaml, student.yaml, distilled.yaml "
        "(the distilled student has the plain student's number of optimizer steps)"
        if PRESETS[preset]["match_steps"] else "configs: teacher.yaml, student.yaml, distilled.yaml",
        "PSNR/SSIM/NMSE/HFEN: per test volume (slab), mean ± 2 sd over volumes",
        f"distilled - plain student: {table['distilled']['psnr'][0] - table['student']['psnr'][0]:+.2f} dB "
        f"PSNR (seed {seed}); the gain over seeds at this size and budget: docs/demo.md",
        "ms/slice: the eager model, one pass over the test set in batches of 8; fast ms/slice: "
        "`optimise_for_inference` (CPU only), same batches, fastest of 3 passes after a warm-up",
        heldout_line,
    ]
    table = write_evaluation(out, ev, f"mrdistill demo ({preset})", notes)
    return DemoResult(out, table, time.perf_counter() - start)
