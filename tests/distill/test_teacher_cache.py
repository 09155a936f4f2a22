"""distill.cache_teacher: the teacher's outputs, computed once; the same training numbers with and
without the cache; refused for fresh masks."""

from __future__ import annotations

import csv

import pytest
import torch

from mrdistill.config import OptimConfig, RunConfig, from_dict
from mrdistill.data.build import make_datasets
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.distill.teacher_cache import CachedTeacher
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.train.batches import make_loader
from mrdistill.train.loop import fit
from mrdistill.train.runs import distill_run
from mrdistill.train.plan import StagePlan


def _distill(tmp_path, tiny_data, cache: bool, teacher: torch.nn.Module) -> torch.nn.Module:
    cfg = from_dict(RunConfig, {
        "name": f"cache{cache}", "out_dir": str(tmp_path), "progress": False,
        "model": {"name": "dccnn", "kwargs": {"cascades": 1, "convs": 3, "channels": 8}},
        "optim": {"batch_size": 3},
        "distill": {"cache_teacher": cache, "stages": [{"epochs": 2, "kd": [
            {"name": "imitation"},
            {"name": "attention", "kwargs": {"pairs": {"cascade1.conv2": "cascade1.conv2"}}}]}]}})
    cfg.data = tiny_data
    return distill_run(cfg, teacher=teacher).model


def test_cached_teacher_returns_the_teachers_outputs(tiny_data) -> None:
    ds = make_datasets(tiny_data, seed=1)
    teacher = build_model("dccnn", cascades=1, convs=3, channels=8, seed=5).eval()
    cached = CachedTeacher(teacher)
    loader = make_loader(ds["train"], 3, seed=1)
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            with torch.no_grad():
                want = teacher(batch.kspace, batch.mask, return_features=True)
            got = cached(batch.kspace, batch.mask, return_features=True)
            assert torch.equal(got.image, want.image)
            assert all(torch.equal(got.features[k], v) for k, v in want.features.items())
    assert len(cached.memo) == len(ds["train"])  # every slice ran through the teacher once


def test_distillation_with_the_cache_matches_without(tmp_path, tiny_data) -> None:
    ds = make_datasets(tiny_data, seed=1)
    teacher = build_model("dccnn", cascades=1, convs=3, channels=8, seed=5)
    terms = {"imitation": (build_kd("imitation"), 1.0),
             "attention": (build_kd("attention", pairs={"cascade1.conv2": "cascade1.conv2"}), 1.0)}
    logs = {}
    for cache in (False, True):
        run_dir = tmp_path / f"cache{cache}"
        run_dir.mkdir()
        objective = DistillObjective(CachedTeacher(teacher) if cache else teacher, terms)
        fit(build_model("dccnn", cascades=1, convs=3, channels=8, seed=0), objective, ds["train"],
            ds["val"], StagePlan(OptimConfig(epochs=2, batch_size=3), model_name="dccnn",
            model_kwargs={}, seed=1, progress=False), run_dir)
        logs[cache] = list(csv.DictReader(open(run_dir / "log.csv")))
    assert len(logs[True]) == len(logs[False]) == 2
    for plain, cached in zip(logs[False], logs[True]):
        # The same numbers up to float rounding: the cached tensors are contiguous copies of the
        # teacher's (partly strided) outputs, so the loss reductions may sum in another order.
        for key in ("loss", "kd/imitation", "kd/attention", "val_psnr"):
            assert float(cached[key]) == pytest.approx(float(plain[key]), rel=1e-5)


def test_cache_refused_with_fresh_masks(tmp_path, tiny_data) -> None:
    tiny_data.mask.fresh_train_masks = True
    with pytest.raises(MrdistillError, match="distill.cache_teacher needs fixed training inputs"):
        _distill(tmp_path, tiny_data, True, build_model("dccnn", cascades=1, convs=3, seed=5))
    assert not (tmp_path / "cacheTrue").exists()
