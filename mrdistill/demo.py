"""The whole story on embedded real data: teacher, plain student, distilled student, one table.

Presets are overrides of the config dataclasses (defaults live there): `smoke` proves the pipeline in
under a minute, `quick` is what `make demo` runs on a 2-core CPU, `full` is KD-MRI's recipe for a GPU.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrdistill.config import RunConfig, from_dict, save_config
from mrdistill.data.datasets import make_datasets
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.runs import claim_dir, distill_run, train_run

TEACHER = {"name": "dccnn", "kwargs": {"cascades": 5, "convs": 5, "channels": 32, "in_channels": 1}}
STUDENT = {"name": "dccnn", "kwargs": {"cascades": 5, "convs": 3, "channels": 32, "in_channels": 1}}

# KD-MRI's schedule: stage 1 attention transfer only; stage 2 alpha*L1(target) + (1-alpha)*imitation.
def kdmri_stages(at_epochs: int, kd_epochs: int, alpha: float, at_weight: float) -> list[dict[str, Any]]:
    return [
        {"epochs": at_epochs, "task_weight": 0.0,
         "kd": [{"name": "attention", "weight": at_weight}]},
        {"epochs": kd_epochs, "task_weight": alpha,
         "kd": [{"name": "imitation", "weight": 1.0 - alpha}]},
    ]


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "data": {"image_size": 48, "max_train_slices": 12, "max_eval_slices": 6},
        "teacher": {"optim": {"epochs": 2, "batch_size": 4}},
        "student": {"optim": {"epochs": 2, "batch_size": 4}},
        "distill": {"stages": kdmri_stages(1, 1, alpha=0.5, at_weight=1000.0)},
    },
    "quick": {
        "data": {"image_size": 96, "max_train_slices": 80, "max_eval_slices": 24},
        "teacher": {"optim": {"epochs": 30, "batch_size": 4, "step_size": 20, "gamma": 0.3}},
        "student": {"optim": {"epochs": 30, "batch_size": 4, "step_size": 20, "gamma": 0.3}},
        "distill": {"stages": kdmri_stages(5, 25, alpha=0.5, at_weight=1000.0)},
    },
    "full": {
        "data": {"image_size": 160},
        "teacher": {"optim": {"epochs": 150, "batch_size": 4, "step_size": 40, "gamma": 0.1}},
        "student": {"optim": {"epochs": 150, "batch_size": 4, "step_size": 40, "gamma": 0.1}},
        "distill": {"stages": kdmri_stages(50, 150, alpha=0.5, at_weight=1000.0)},
    },
}


@dataclass
class DemoResult:
    out: Path
    table: str
    seconds: float


def demo_configs(preset: str, out: Path, acceleration: float, seed: int, device: str,
                 progress: bool) -> dict[str, RunConfig]:
    """The three run configs (teacher, student, distilled) of a preset."""
    check_choice("preset", preset, list(PRESETS))
    if acceleration <= 1:
        raise MrdistillError(f"acceleration must be > 1, got {acceleration}")
    p = PRESETS[preset]
    data = copy.deepcopy(p["data"])
    data.setdefault("mask", {})["acceleration"] = float(acceleration)
    common = {"out_dir": str(out), "seed": seed, "device": device, "progress": progress, "data": data}
    cfgs = {
        "teacher": {**common, "name": "teacher", "model": TEACHER, **p["teacher"]},
        "student": {**common, "name": "student", "model": STUDENT, **p["student"]},
        "distilled": {**common, "name": "distilled", "model": STUDENT, **p["student"],
                      "distill": {"teacher": str(out / "teacher" / "checkpoints" / "best.pt"),
                                  "stages": p["distill"]["stages"]}},
    }
    return {k: from_dict(RunConfig, copy.deepcopy(v), f"preset {preset}.{k}") for k, v in cfgs.items()}


def run_demo(preset: str = "quick", out: str | Path = "runs/demo", acceleration: float = 4.0,
             seed: int = 42, device: str = "cpu", overwrite: bool = False,
             progress: bool = True) -> DemoResult:
    """Train teacher and student, distil, and write `report.md`, tables and figures into `out`."""
    start = time.perf_counter()
    out = Path(out)
    cfgs = demo_configs(preset, out, acceleration, seed, device, progress)
    claim_dir(out, overwrite)
    data = make_datasets(cfgs["teacher"].data, seed)
    teacher = train_run(cfgs["teacher"], overwrite=True, datasets=data).model
    student = train_run(cfgs["student"], overwrite=True, datasets=data).model
    distilled = distill_run(cfgs["distilled"], overwrite=True, datasets=data, teacher=teacher).model
    ev = evaluate_models({"zero-filled": None, "teacher": teacher, "student": student,
                          "distilled": distilled}, data["test"], device)
    notes = [
        f"preset `{preset}`, acceleration {acceleration:g}x, seed {seed}, device {device}",
        f"data: {', '.join(cfgs['teacher'].data.sources)}; {len(data['train'])} train / "
        f"{len(data['val'])} val / {len(data['test'])} test slices at "
        f"{cfgs['teacher'].data.image_size}px",
        "PSNR/SSIM/NMSE/HFEN: per test volume (slab), mean ± 2 sd over volumes",
    ]
    for name, cfg in cfgs.items():
        save_config(cfg, out / f"{name}.yaml")
    table = write_evaluation(out, ev, f"mrdistill demo ({preset})", notes)
    return DemoResult(out, table, time.perf_counter() - start)
