"""The one teacher cache: the teacher's outputs per (volume, slice), computed once; the same
training numbers with and without it; no tensor read per lookup; a slice shown with another mask
is refused; one policy for fresh masks (caching off, said once) for distill and adaptive KD."""

from __future__ import annotations

import csv
import warnings

import pytest
import torch

from mrdistill.config import DataConfig, MaskConfig, OptimConfig, RunConfig, from_dict
from mrdistill.data.build import make_datasets
from mrdistill.data.sample import Sample
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.distill.teacher_cache import TeacherCache, cache_allowed, select
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.models.base import ReconOutput, run_model
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


def test_the_cache_returns_the_teachers_outputs_running_it_once_per_slice(tiny_data) -> None:
    ds = make_datasets(tiny_data, seed=1)
    teacher = build_model("dccnn", cascades=1, convs=3, channels=8, seed=5).eval()
    calls = []
    cache = TeacherCache(verify_every=1)
    loader = make_loader(ds["train"], 3, seed=1)
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            with torch.no_grad():
                want = teacher(batch.kspace, batch.mask, return_features=True)
            got = cache.outputs(batch, "features",
                                lambda part: calls.append(len(part.volume)) or run_model(teacher, part, True))
            assert torch.equal(got.image, want.image)
            assert all(torch.equal(got.features[k], v) for k, v in want.features.items())
    assert len(cache) == len(ds["train"]) == sum(calls)  # the teacher ran once per slice


def _meta_batch(volumes: list[str], mask: torch.Tensor) -> Sample:
    n = len(volumes)
    k = torch.empty(n, 1, 8, 8, dtype=torch.complex64, device="meta")
    return Sample(k, mask, torch.empty(n, 1, 8, 8, device="meta"), None, torch.empty(n, device="meta"),
                  volumes, [0] * n)


def test_a_lookup_reads_no_tensor_and_a_changed_mask_is_refused() -> None:
    """Keys come from the batch's host-side ids: on the meta device (where reading any value
    fails) the cache still works; the mask check is read only by `verify`."""
    runs = []

    def run(part: Sample) -> ReconOutput:
        runs.append(list(part.volume))
        return ReconOutput(torch.empty(len(part.volume), 1, 8, 8, device="meta"), {})

    cache = TeacherCache(verify_every=10**9)
    mask = torch.empty(3, 1, 1, 8, device="meta")
    cache.outputs(_meta_batch(["a", "b", "c"], mask), None, run)
    out = cache.outputs(_meta_batch(["c", "d", "a"], mask), None, run)
    assert runs == [["a", "b", "c"], ["d"]] and out.image.shape == (3, 1, 8, 8)
    cpu = TeacherCache(verify_every=1)
    batch = Sample(torch.zeros(2, 1, 4, 4, dtype=torch.complex64), torch.ones(2, 1, 1, 4),
                   torch.zeros(2, 1, 4, 4), None, torch.ones(2), ["a", "b"], [0, 0])
    same = lambda part: ReconOutput(torch.zeros(len(part.volume), 1, 4, 4), {})  # noqa: E731
    cpu.outputs(batch, None, same)
    cpu.outputs(batch, None, same)
    with pytest.raises(MrdistillError, match="saw a slice again with another mask"):
        cpu.outputs(batch._replace(mask=torch.zeros(2, 1, 1, 4)), None, same)
    assert select(batch, [1]).volume == ["b"] and select(batch, [1]).kspace.shape == (1, 1, 4, 4)


def test_distillation_with_the_cache_matches_without(tmp_path, tiny_data) -> None:
    ds = make_datasets(tiny_data, seed=1)
    teacher = build_model("dccnn", cascades=1, convs=3, channels=8, seed=5)
    terms = {"imitation": (build_kd("imitation"), 1.0),
             "attention": (build_kd("attention", pairs={"cascade1.conv2": "cascade1.conv2"}), 1.0)}
    logs = {}
    for cache in (False, True):
        run_dir = tmp_path / f"cache{cache}"
        run_dir.mkdir()
        objective = DistillObjective(teacher, terms, cache=TeacherCache() if cache else None)
        fit(build_model("dccnn", cascades=1, convs=3, channels=8, seed=0), objective, ds["train"],
            ds["val"], StagePlan(OptimConfig(epochs=2, batch_size=3), model_name="dccnn",
            model_kwargs={}, seed=1, progress=False), run_dir)
        logs[cache] = list(csv.DictReader(open(run_dir / "log.csv")))
        if cache:  # every training slice, once
            assert len(objective.cache) == len(ds["train"])
    assert len(logs[True]) == len(logs[False]) == 2
    for plain, cached in zip(logs[False], logs[True]):
        # The same numbers up to float rounding: the cached tensors are contiguous copies of the
        # teacher's (partly strided) outputs, so the loss reductions may sum in another order.
        for key in ("loss", "kd/imitation", "kd/attention", "val_psnr"):
            assert float(cached[key]) == pytest.approx(float(plain[key]), rel=1e-5)


def test_one_policy_for_fresh_masks_caching_off_said_once(tmp_path, tiny_data) -> None:
    fresh = DataConfig(mask=MaskConfig(fresh_train_masks=True))
    for key in ("distill.cache_teacher", "distill.adaptive.cache_teacher"):
        with pytest.warns(UserWarning, match=f"{key}: data.mask.fresh_train_masks draws new masks"):
            assert cache_allowed(True, fresh, key) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache_allowed(True, DataConfig(), "x") and not cache_allowed(False, fresh, "x")
    tiny_data.mask.fresh_train_masks = True
    with pytest.warns(UserWarning) as said:
        _distill(tmp_path, tiny_data, True, build_model("dccnn", cascades=1, convs=3, seed=5))
    assert len([w for w in said if "fresh_train_masks" in str(w.message)]) == 1
    assert (tmp_path / "cacheTrue" / "checkpoints" / "best.pt").is_file()
