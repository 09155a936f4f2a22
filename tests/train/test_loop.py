import csv

import pytest
import torch

from mrdistill.config import OptimConfig, RunConfig, from_dict
from mrdistill.data.build import make_datasets
from mrdistill.distill import DistillObjective
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from mrdistill.train.loop import fit
from mrdistill.train.runs import distill_run, train_run
from mrdistill.train.plan import StagePlan


def test_fit_improves_writes_checkpoints_and_log(tmp_path, tiny_data):
    ds = make_datasets(tiny_data)
    model = build_model("dccnn", convs=3, cascades=2, seed=0)
    res = fit(model, DistillObjective(), ds["train"], ds["val"], StagePlan(OptimConfig(epochs=3,
              lr=3e-3), model_name="dccnn", model_kwargs={"convs": 3, "cascades": 2}, progress=False),
              tmp_path)
    assert 1 <= res.best_epoch <= 3 and len(res.history) == 3
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and "val_psnr" in rows[0]
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == res.best_epoch and best["metric"]["psnr"] == pytest.approx(res.best_value)
    # The model holds the best weights at the end, and the checkpoint rebuilds it.
    again = load_model(tmp_path / "checkpoints" / "best.pt")
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_max_steps_budget(tmp_path, tiny_data):
    ds = make_datasets(tiny_data)
    res = fit(build_model("dccnn", convs=3, cascades=1), DistillObjective(), ds["train"], ds["val"],
              StagePlan(OptimConfig(epochs=10, max_steps=3, batch_size=4), model_name="dccnn",
              model_kwargs={"cascades": 1, "convs": 3}, progress=False), tmp_path)
    assert res.history[-1]["step"] == 3


def test_checkpoint_atomic_and_safe(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model_name": "dccnn", "model": {}})
    assert load_checkpoint(path)["model_name"] == "dccnn"
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp files left behind
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(MrdistillError, match="cannot read checkpoint"):
        load_checkpoint(path)
    with pytest.raises(MrdistillError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_train_then_distill_runs(tmp_path, tiny_data):
    base = {"out_dir": str(tmp_path), "progress": False, "optim": {"epochs": 1},
            "data": {"image_size": 32, "max_train_slices": 8, "max_eval_slices": 4}}
    teacher = train_run(from_dict(RunConfig, {**base, "name": "t", "model": {"kwargs": {"cascades": 2}}}))
    assert (teacher.run_dir / "report.md").exists() and "zero-filled" in teacher.table
    cfg = from_dict(RunConfig, {**base, "name": "s", "model": {"kwargs": {"cascades": 2, "convs": 3}},
                                "distill": {"teacher": str(teacher.run_dir / "checkpoints/best.pt"),
                                            "stages": [{"epochs": 1, "task_weight": 0,
                                                        "kd": [{"name": "attention",
                                                                "kwargs": {"pairs": {"cascade1.conv2": "cascade1.conv3"}}}]},
                                                       {"epochs": 1, "kd": [{"name": "imitation"}]}]}})
    res = distill_run(cfg)
    stages = {r["stage"] for r in csv.DictReader(open(res.run_dir / "log.csv"))}
    assert stages == {"stage1", "stage2"}
    with pytest.raises(MrdistillError, match="already holds results"):
        distill_run(cfg)  # nothing the user had is overwritten without --overwrite


def test_grouped_batches_never_mix_labelled_and_unlabelled(tiny_data):
    from mrdistill.data.datasets import MixedDataset
    from mrdistill.train.batches import make_loader

    tiny_data.labeled_train_slices = 3
    ds = make_datasets(tiny_data)
    mixed = MixedDataset(ds["train"], ds["unlabeled"])
    batches = list(make_loader(mixed, 2, seed=0))
    assert sum(len(b.volume) for b in batches) == 8
    assert {b.target is None for b in batches} == {True, False}
    # Same seed, same order; the global RNG is not consumed.
    state = torch.random.get_rng_state()
    again = list(make_loader(mixed, 2, seed=0))
    assert [b.slice_index for b in again] == [b.slice_index for b in batches]
    assert torch.equal(state, torch.random.get_rng_state())


def test_unlabelled_batch_learns_from_teacher_only(tiny_data):
    from mrdistill.distill import build_kd

    tiny_data.labeled_train_slices = 3
    batch = make_datasets(tiny_data)["unlabeled"]
    from mrdistill.data.sample import collate_samples
    sample = collate_samples([batch[0], batch[1]])
    obj = DistillObjective(build_model("dccnn", cascades=1), {"imitation": (build_kd("imitation"), 1.0)})
    out = obj(build_model("dccnn", cascades=1, convs=3), sample)
    assert "task" not in out and torch.equal(out["loss"], out["kd/imitation"])


def test_loading_a_checkpoint_leaves_global_rng_alone(tmp_path):
    path = tmp_path / "m.pt"
    from mrdistill.train.checkpoint import model_payload
    save_checkpoint(path, model_payload(build_model("dccnn", cascades=1, seed=0), "dccnn", {"cascades": 1}))
    state = torch.random.get_rng_state()
    load_model(path)
    assert torch.equal(state, torch.random.get_rng_state())
