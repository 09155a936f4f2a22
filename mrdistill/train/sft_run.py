"""Training a student-friendly teacher (`RunConfig.sft`): the teacher learns with student branches.

Writes the usual run directory. `checkpoints/best.pt` is an ordinary teacher checkpoint (its "extra"
holds the branch student); `checkpoints/sft_student.pt` is that student as an ordinary model
checkpoint, for `distill.init` (the SFT student blocks as the student's initial weights).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mrdistill.config import RunConfig
from mrdistill.data.datasets import SliceDataset
from mrdistill.distill.sft import SFTObjective, check_pair, student_state
from mrdistill.models import build_model
from mrdistill.train import distributed
from mrdistill.train.checkpoint import data_meta, load_checkpoint, model_payload, save_checkpoint
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.loop import FitResult, fit
from mrdistill.train.plan import run_plan
from mrdistill.train.state import RunState

SFT_STUDENT = "sft_student.pt"


def build_sft(cfg: RunConfig) -> tuple[nn.Module, SFTObjective]:
    """The teacher (`cfg.model`) and the SFT objective holding the branch student (seed + 1)."""
    assert cfg.sft is not None
    teacher = build_model(cfg.model.name, seed=cfg.seed, **cfg.model.kwargs)
    student = build_model(cfg.sft.student.name, seed=cfg.seed + 1, **cfg.sft.student.kwargs)
    check_pair(teacher, student)
    objective = SFTObjective(student, cfg.sft.teacher_weight, cfg.sft.branch_weight,
                             cfg.sft.imitation_weight, cfg.sft.input_branch)
    return teacher, objective


def export_sft_student(cfg: RunConfig, run_dir: Path) -> Path:
    """Write the best epoch's branch student as an ordinary checkpoint; returns its path."""
    assert cfg.sft is not None
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    student = build_model(cfg.sft.student.name, seed=cfg.seed + 1, **cfg.sft.student.kwargs)
    student.load_state_dict(student_state(best["extra"]))
    path = run_dir / "checkpoints" / SFT_STUDENT
    save_checkpoint(path, model_payload(student, cfg.sft.student.name, cfg.sft.student.kwargs,
                                        epoch=best["epoch"], stage="sft", **data_meta(cfg.data)))
    return path


def sft_train(cfg: RunConfig, run: RunState,
              data: dict[str, SliceDataset]) -> tuple[nn.Module, list[FitResult], str]:
    """Train the SFT teacher (validated and kept by its own output: only the teacher runs at
    inference), export the branch student, and report the teacher on the test set."""
    teacher, objective = build_sft(cfg)
    run_dir = run.run_dir
    result = fit(teacher, objective, data["train"], data["val"], run_plan(cfg, "sft"), run)
    if not distributed.is_main():
        return teacher, [result], ""  # under torchrun rank 0 exports, evaluates and writes
    export_sft_student(cfg, run_dir)
    ev = evaluate_models({"zero-filled": None, cfg.name: teacher}, data["test"], cfg.device)
    table = write_evaluation(run_dir, ev, f"{cfg.name}: test set (SFT teacher)",
                             [f"config: {run_dir / 'config.yaml'}"])
    return teacher, [result], table
