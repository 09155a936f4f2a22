"""Feature KD between a transformer and a CNN: token maps, adapters, resolution matching."""

import itertools

import pytest
import torch

from mrdistill.config import DataConfig, OptimConfig, SuperResConfig
from mrdistill.data.sample import collate_samples
from mrdistill.data.build import make_task_datasets
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.distill.hetero import as_image, check_alignable, resize_to
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.models.base import ReconOutput, run_model
from mrdistill.train.checkpoint import load_checkpoint
from mrdistill.train.loop import fit
from mrdistill.train.plan import StagePlan

TEACHER = {"embed_dim": 16, "groups": 2, "depth": 2, "heads": 2, "window": 4}
STUDENT = {"channels": 8, "levels": 3, "iterations": 2}


def sr_batch(n: int = 2, size: int = 32, scale: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)
    lowres = torch.nn.functional.avg_pool2d(target, scale)
    from mrdistill.data.sample import Sample
    return Sample(torch.zeros(n, 1, size, size, dtype=torch.complex64), torch.ones(n, 1, size, size),
                  lowres, target, torch.ones(n), [f"v{i}" for i in range(n)], list(range(n)))


def pair_outputs(scale: int = 2):
    batch = sr_batch(scale=scale)
    teacher = build_model("swinir", seed=0, scale=scale, **TEACHER)
    student = build_model("chpnet", seed=1, scale=scale, **STUDENT)
    return batch, run_model(student, batch, True), run_model(teacher, batch, True)


def test_token_maps_become_images():
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float32).view(2, 16, 3)
    img = as_image(tokens, "x")
    assert img.shape == (2, 3, 4, 4)
    assert torch.equal(img[0, :, 1, 2], tokens[0, 6])
    with pytest.raises(MrdistillError, match="not square"):
        as_image(torch.zeros(1, 12, 3), "x")


def test_alignment_needs_integer_factors():
    check_alignable((1, 8, 32, 32), (1, 60, 16, 16), "p")
    check_alignable((1, 8, 8, 8), (1, 60, 32, 32), "p")
    with pytest.raises(MrdistillError, match="cannot be aligned.*integer factors"):
        check_alignable((1, 8, 24, 24), (1, 60, 16, 16), "p")
    x = torch.rand(1, 2, 8, 8)
    assert resize_to(x, (4, 4)).shape == (1, 2, 4, 4)
    assert resize_to(x, (16, 16)).shape == (1, 2, 16, 16)
    torch.testing.assert_close(resize_to(x, (4, 4)), torch.nn.functional.avg_pool2d(x, 2))


@pytest.mark.parametrize("scale", [2, 4])
def test_every_student_teacher_pair_aligns(scale):
    batch, s_out, t_out = pair_outputs(scale)
    for s_key, t_key in itertools.product(sorted(s_out.features), sorted(t_out.features)):
        kd = build_kd("hetero_feature", pairs={s_key: t_key})
        kd.setup(s_out, t_out, batch)
        loss = kd(s_out, t_out, batch)
        assert loss.ndim == 0 and torch.isfinite(loss), (s_key, t_key)
        assert kd.adapters[0].in_channels == s_out.features[s_key].shape[1]
        assert kd.adapters[0].out_channels == t_out.features[t_key].shape[1]


def test_loss_is_scale_free_and_gradients_go_to_the_right_side():
    fs = torch.rand(2, 4, 8, 8, requires_grad=True)
    ft = torch.rand(2, 6, 4, 4, requires_grad=True)
    s_out, t_out = ReconOutput(fs, {"a": fs}), ReconOutput(ft, {"b": ft})
    kd = build_kd("hetero_feature", pairs={"a": "b"})
    kd.setup(s_out, t_out)
    loss = kd(s_out, t_out, None)
    torch.testing.assert_close(kd(s_out, ReconOutput(ft, {"b": 10 * ft + 3}), None), loss)
    loss.backward()
    assert fs.grad is not None and kd.adapters[0].weight.grad is not None and ft.grad is None
    fs.grad = None
    kd.zero_grad()
    kd.feedback(s_out, t_out).backward()
    assert ft.grad is not None and fs.grad is None and kd.adapters[0].weight.grad is None


def test_adapters_identity_when_widths_agree_and_global_rng_untouched():
    fs, ft = torch.rand(2, 4, 8, 8), torch.rand(2, 6, 8, 8)
    state = torch.random.get_rng_state()
    kd = build_kd("hetero_feature", pairs={"a": "a", "b": "c"}, seed=3)
    kd.setup(ReconOutput(fs, {"a": fs, "b": fs}), ReconOutput(ft, {"a": fs, "c": ft}))
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(kd.adapters[0](fs), fs)
    again = build_kd("hetero_feature", pairs={"a": "a", "b": "c"}, seed=3)
    again.setup(ReconOutput(fs, {"a": fs, "b": fs}), ReconOutput(ft, {"a": fs, "c": ft}))
    assert torch.equal(again.adapters[1].weight, kd.adapters[1].weight)


def test_unbuilt_adapters_and_missing_pairs():
    with pytest.raises(MrdistillError, match="needs pairs"):
        build_kd("hetero_feature")
    batch, s_out, t_out = pair_outputs()
    with pytest.raises(RuntimeError, match="setup"):
        build_kd("hetero_feature", pairs={"iter2.dec2": "body"})(s_out, t_out, batch)


def test_fit_trains_and_checkpoints_the_adapters(tmp_path):
    data = DataConfig(image_size=32, max_train_slices=4, max_eval_slices=2, slab=8,
                      superres=SuperResConfig(2))
    ds = make_task_datasets(data)
    teacher = build_model("swinir", seed=0, scale=2, **TEACHER)
    student = build_model("chpnet", seed=1, scale=2, **STUDENT)
    kd = build_kd("hetero_feature", pairs={"iter2.dec2": "body", "iter2.enc3": "group2"})
    objective = DistillObjective(teacher, {"hetero": (kd, 1.0)})
    objective.setup(student, collate_samples([ds["train"][0]]))  # what `fit` does first
    before = [a.weight.detach().clone() for a in kd.adapters]
    fit(student, objective, ds["train"], ds["val"], StagePlan(OptimConfig(epochs=1, batch_size=2),
        model_name="chpnet", model_kwargs={"scale": 2, **STUDENT}, progress=False), tmp_path)
    assert all(not torch.equal(b, a.weight) for b, a in zip(before, kd.adapters))
    extra = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra"]
    assert "kd.hetero.adapters.1.weight" in extra
