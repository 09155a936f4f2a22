"""Which epoch a stage keeps: a stage without a task term is judged by its own objective."""

import math

import pytest
import torch
from torch import nn

from mrdistill.config import RunConfig, StageConfig, from_dict
from mrdistill.data.build import make_datasets
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput
from mrdistill.physics.fft import ifft2c
from mrdistill.train.checkpoint import load_checkpoint
from mrdistill.train.runs import distill_run, train_run
from mrdistill.train.selection import selection_score

DATA = {"image_size": 32, "max_train_slices": 8, "max_eval_slices": 4}


class DarkTeacher(nn.Module):
    """A 'teacher' far worse than a trained student: the zero-filled image at a third of its
    brightness (real-image mode, (N, 1, H, W)). Imitating it lowers the student's PSNR while the
    imitation loss falls, as a feature-only stage can."""

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor, *,
                return_features: bool = False) -> ReconOutput:
        return ReconOutput(image=ifft2c(kspace).abs() / 3, features={})


def test_default_selection_follows_the_task_term():
    assert StageConfig(task_weight=0.0).selection == "val_objective"
    assert StageConfig(task_weight=0.5).selection == "val_metric"
    assert StageConfig(task_weight=0.0, select="last").selection == "last"


def test_selection_score_higher_is_better():
    assert selection_score("val_metric", 1, "psnr", 30.0, None) > selection_score("val_metric", 2, "psnr", 29.0, None)
    assert selection_score("val_metric", 1, "nmse", 0.1, None) < selection_score("val_metric", 2, "nmse", 0.05, None)
    assert selection_score("val_objective", 1, "psnr", 0.0, 2.0) < selection_score("val_objective", 2, "psnr", 0.0, 1.0)
    assert selection_score("val_objective", 1, "psnr", 0.0, math.nan) == -math.inf
    assert selection_score("last", 3, "psnr", 0.0, None) > selection_score("last", 2, "psnr", 99.0, None)


@pytest.fixture(scope="module")
def trained_student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    cfg = from_dict(RunConfig, {"out_dir": str(out), "name": "s", "progress": False, "data": DATA,
                                "optim": {"epochs": 3, "lr": 3e-3},
                                "model": {"kwargs": {"cascades": 2, "convs": 3}}})
    return train_run(cfg).run_dir / "checkpoints" / "best.pt"


def _distill(tmp_path, init, **stage):
    cfg = from_dict(RunConfig, {
        "out_dir": str(tmp_path), "name": "d", "progress": False, "data": DATA,
        "model": {"kwargs": {"cascades": 2, "convs": 3}},
        "distill": {"teacher": "-", "init": str(init),
                    "stages": [{"epochs": 4, "lr": 3e-3, "task_weight": 0.0,
                                "kd": [{"name": "imitation"}], **stage}]}})
    ds = make_datasets(cfg.data, cfg.seed)
    return distill_run(cfg, overwrite=True, datasets=ds, teacher=DarkTeacher())


def test_feature_only_stage_keeps_its_lowest_validation_objective(tmp_path, trained_student):
    res = _distill(tmp_path, trained_student)
    (fit,) = res.fits
    objective = [row["val_objective"] for row in fit.history]
    psnr = [row["val_psnr"] for row in fit.history]
    # The situation of the defect: the stage's loss falls while the output's PSNR falls.
    assert objective[-1] < objective[0] and psnr[-1] < psnr[0]
    kept = fit.best_epoch
    assert fit.select == "val_objective" and kept == 1 + objective.index(min(objective))
    assert kept != 1 + psnr.index(max(psnr))  # selecting by PSNR would keep another epoch
    best = load_checkpoint(res.run_dir / "checkpoints" / "best.pt")
    assert best["epoch"] == kept and best["metric"]["objective"] == pytest.approx(min(objective))


def test_select_option_overrides_the_default(tmp_path, trained_student):
    by_psnr = _distill(tmp_path / "m", trained_student, select="val_metric").fits[0]
    psnr = [row["val_psnr"] for row in by_psnr.history]
    assert by_psnr.best_epoch == 1 + psnr.index(max(psnr)) and "val_objective" not in by_psnr.history[0]
    last = _distill(tmp_path / "l", trained_student, select="last").fits[0]
    assert last.best_epoch == 4


def test_unknown_selection_names_the_stage_key(tmp_path, trained_student):
    with pytest.raises(MrdistillError, match=r"distill\.stages\[0\]\.select: expected one of"):
        _distill(tmp_path, trained_student, select="best")
