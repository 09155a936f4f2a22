"""The KD method catalogue: two hand-computed golden values per method, edge cases, adapters."""

import inspect
import math

import pytest
import torch

from conftest import synthetic_batch
from mrdistill.config import OptimConfig
from mrdistill.data.build import make_datasets
from mrdistill.distill import DistillObjective, build_kd, list_kd
from mrdistill.distill.attention import default_pairs
from mrdistill.distill.registry import _KD
from mrdistill.errors import MrdistillError
from mrdistill.models import ReconOutput, build_model
from mrdistill.train.checkpoint import load_checkpoint
from mrdistill.train.loop import fit
from mrdistill.train.plan import StagePlan

BATCH = synthetic_batch()


def feats(**features: torch.Tensor) -> ReconOutput:
    return ReconOutput(next(iter(features.values())), dict(features))


def value(name: str, student: ReconOutput, teacher: ReconOutput, **kwargs) -> float:
    kwargs.setdefault("pairs", {"a": "b"})
    return float(build_kd(name, **kwargs)(student, teacher, BATCH).detach())


def col(*rows) -> torch.Tensor:
    """Rows of per-sample vectors -> features (B, C, 1, 1)."""
    t = torch.tensor(rows, dtype=torch.float32)
    return t.reshape(t.shape[0], -1, 1, 1)


def test_hint_golden_values():
    # Equal channels: the regressor starts as the identity -> plain MSE: (0 - 1)^2.
    assert value("hint", feats(a=torch.zeros(1, 1, 1, 2)), feats(b=torch.ones(1, 1, 1, 2))) == 1.0
    # 1 -> 2 channels with weights (2, 3): outputs (2, 3) vs 0 -> (4 + 9) / 2.
    hint = build_kd("hint", pairs={"a": "b"}, channels={"a": [1, 2]})
    with torch.no_grad():
        hint.regressors["0"].weight.copy_(torch.tensor([2.0, 3.0]).view(2, 1, 1, 1))
        hint.regressors["0"].bias.zero_()
    out = hint(feats(a=torch.ones(1, 1, 1, 1)), feats(b=torch.zeros(1, 2, 1, 1)), BATCH)
    assert float(out.detach()) == pytest.approx(6.5)


def test_fsp_golden_values():
    pairs = {"a1": "b1", "a2": "b2"}
    # G_S = (1*3 + 2*4) / 2 = 5.5, G_T = 1 -> 4.5^2.
    s = feats(a1=torch.tensor([1.0, 2.0]).view(1, 1, 1, 2), a2=torch.tensor([3.0, 4.0]).view(1, 1, 1, 2))
    t = feats(b1=torch.ones(1, 1, 1, 2), b2=torch.ones(1, 1, 1, 2))
    assert value("fsp", s, t, pairs=pairs) == pytest.approx(20.25)
    # 2x1 matrices: G_S = [3, 6], G_T = 0 -> 9 + 36.
    s = feats(a1=col([1.0, 2.0]), a2=col([3.0]))
    t = feats(b1=col([0.0, 0.0]), b2=col([1.0]))
    assert value("fsp", s, t, pairs=pairs) == pytest.approx(45.0)


def test_similarity_golden_values():
    # Rows (1, 2)/sqrt5 vs (1, -1)/sqrt2 and (-1, 1)/sqrt2: squared distances 2 +- 2/sqrt10 -> 4 / 4.
    assert value("similarity", feats(a=col([1.0], [2.0])), feats(b=col([1.0], [-1.0]))) == pytest.approx(1.0)
    # G_S = I, G_T = ones: each row differs by 2 - sqrt2 -> (2 - sqrt2) * 2 / 4.
    expected = (2 - math.sqrt(2)) / 2
    s, t = feats(a=col([1, 0], [0, 1])), feats(b=col([1, 0], [1, 0]))
    assert value("similarity", s, t) == pytest.approx(expected)


def test_correlation_golden_values():
    s, t = feats(a=col([1, 0], [0, 1])), feats(b=col([1, 0], [1, 0]))
    # Bilinear: C_S = I, C_T = ones -> 2 off-diagonal ones / 4.
    assert value("correlation", s, t, kernel="bilinear") == pytest.approx(0.5)
    # Gaussian, gamma 0.4, order 2: k(1) = e^-0.8 (1 + 0.8 + 0.32), k(0) = e^-0.8.
    diff = math.exp(-0.8) * 2.12 - math.exp(-0.8)
    assert value("correlation", s, t) == pytest.approx(2 * diff**2 / 4, rel=1e-6)


def test_relational_golden_values():
    # Line (0, 1, 2) vs (0, 1, 3): psi_D (0.75, 1.5, 0.75) vs (0.5, 1.5, 1) -> Huber mean 0.0625 / 3.
    s, t = feats(a=col([0.0], [1.0], [2.0])), feats(b=col([0.0], [1.0], [3.0]))
    assert value("relational", s, t, angle_weight=0.0) == pytest.approx(0.0625 / 3, rel=1e-6)
    # Right triangle vs collinear points: angle cosines (0, .707, .707) vs (1, -1, 1); Huber mean
    # over the 6 ordered distinct triplets = 2 * (0.5 + (1.7071 - 0.5) + 0.5 * 0.2929^2) / 6.
    s = feats(a=col([0, 0], [1, 0], [0, 1]))
    t = feats(b=col([0, 0], [1, 0], [2, 0]))
    assert value("relational", s, t, distance_weight=0.0, angle_weight=1.0) == pytest.approx(3.5 / 6, rel=1e-6)


def test_pkt_golden_values():
    # p_S(.|0) = (1/3, 2/3), p_T = (1/2, 1/2): KL = 0.5 ln 1.125, same for j=2, 0 for j=1.
    s, t = feats(a=col([1, 0], [0, 1], [1, 0])), feats(b=col([1, 0], [1, 0], [1, 0]))
    assert value("pkt", s, t) == pytest.approx(math.log(1.125) / 3, rel=1e-5)
    # Swapped roles: p_T(.|0) = (1/3, 2/3), p_S = (1/2, 1/2) -> KL = (1/3) ln(2/3) + (2/3) ln(4/3).
    expected = 2 * (math.log(2 / 3) / 3 + 2 * math.log(4 / 3) / 3) / 3
    assert value("pkt", feats(a=t.image), feats(b=s.image)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", list_kd())
def test_a_batch_of_one_gives_a_finite_loss(name):
    batch = synthetic_batch(n=1)
    teacher, student = build_model("dccnn", seed=0), build_model("dccnn", convs=3, seed=1)
    takes_pairs = "pairs" in inspect.signature(_KD[name].__init__).parameters
    loss = build_kd(name, pairs=default_pairs()) if takes_pairs else build_kd(name)
    objective = DistillObjective(teacher, {name: (loss, 1.0)}, task_weight=1.0)
    objective.setup(student, batch)
    out = objective(student, batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_relational_methods_accept_features_of_different_shapes():
    s, t = feats(a=torch.rand(4, 3, 5, 5)), feats(b=torch.rand(4, 8, 7, 7))
    for name in ("similarity", "correlation", "relational", "pkt"):
        assert math.isfinite(value(name, s, t))


def test_relational_is_translation_and_scale_invariant():
    e = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    base = value("relational", feats(a=e), feats(b=e.flip(0)))
    assert value("relational", feats(a=3 * e + 7), feats(b=e.flip(0))) == pytest.approx(base, rel=1e-5)


def test_mismatched_shapes_without_adapter_name_the_fitting_keys():
    s = feats(a=torch.rand(2, 4, 6, 6))
    t = ReconOutput(torch.rand(2, 1, 6, 6), {"b": torch.rand(2, 8, 6, 6), "c": torch.rand(2, 4, 6, 6)})
    with pytest.raises(MrdistillError, match=r"hint pair a->b: .*regressor is false.*\(4, 6, 6\): c$"):
        build_kd("hint", pairs={"a": "b"}, regressor=False)(s, t, BATCH)
    assert value("hint", s, t) >= 0  # with the regressor (default) the channel counts may differ
    with pytest.raises(MrdistillError, match=r"hint pair a->b: .*spatial size"):
        build_kd("hint", pairs={"a": "b"})(s, feats(b=torch.rand(2, 8, 3, 3)), BATCH)
    with pytest.raises(MrdistillError, match="fsp pair a->b: .*no adapter.*: c$"):
        build_kd("fsp", pairs={"a": "b", "a2": "c"})(feats(a=s.image, a2=s.image), t, BATCH)
    with pytest.raises(MrdistillError, match="at least two feature pairs"):
        build_kd("fsp", pairs={"a": "b"})
    with pytest.raises(MrdistillError, match="not student keys of the pairs; valid: a"):
        build_kd("hint", pairs={"a": "b"}, channels={"x": [1, 1]})
    with pytest.raises(MrdistillError, match="pairs must be a non-empty mapping"):
        build_kd("similarity", pairs=["a", "b"])


def test_fit_trains_and_checkpoints_the_adapters_but_exports_only_the_model(tmp_path, tiny_data):
    ds = make_datasets(tiny_data)
    teacher = build_model("dccnn", cascades=2, seed=0)
    student = build_model("dccnn", cascades=2, convs=3, channels=16, seed=1)
    pairs = {"cascade1.conv2": "cascade1.conv3", "cascade2.conv2": "cascade2.conv3"}
    hint = build_kd("hint", pairs=pairs)  # 16 -> 32 channels: sizes known only after setup
    objective = DistillObjective(teacher, {"hint": (hint, 1.0)}, task_weight=0.5)
    fit(student, objective, ds["train"], ds["val"], StagePlan(OptimConfig(epochs=1), model_name="dccnn",
        model_kwargs={"cascades": 2, "convs": 3, "channels": 16}, progress=False), tmp_path)
    reg = hint.regressors["0"]
    assert (reg.in_channels, reg.out_channels) == (16, 32)
    init = build_kd("hint", pairs=pairs, channels={k: [16, 32] for k in pairs})
    assert not torch.equal(reg.weight, init.regressors["0"].weight)  # it was trained
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert set(ckpt["extra"]) == {f"kd.hint.regressors.{i}.{p}" for i in "01" for p in ("weight", "bias")}
    assert not any("regressor" in k for k in ckpt["model"])


def test_bad_feature_key_fails_before_training(tmp_path, tiny_data):
    ds = make_datasets(tiny_data)
    teacher, student = build_model("dccnn", cascades=1, seed=0), build_model("dccnn", cascades=1, convs=3)
    pkt = build_kd("pkt", pairs={"cascade1.conv7": "cascade1.conv3"})
    objective = DistillObjective(teacher, {"pkt": (pkt, 1.0)})
    with pytest.raises(MrdistillError, match="student has no feature 'cascade1.conv7'; valid: "
                                             "cascade1.conv1"):
        fit(student, objective, ds["train"], ds["val"], StagePlan(OptimConfig(epochs=1),
            model_name="dccnn", model_kwargs={}, progress=False), tmp_path)
    assert not (tmp_path / "log.csv").exists()


@pytest.mark.parametrize("name", ["hint", "fsp", "similarity", "correlation", "relational", "pkt"])
def test_every_method_trains_in_a_single_weighted_stage(tmp_path, tiny_data, name):
    ds = make_datasets(tiny_data)
    teacher, student = build_model("dccnn", seed=0), build_model("dccnn", convs=3, seed=1)
    objective = DistillObjective(teacher, {name: (build_kd(name), 0.5)}, task_weight=1.0)
    res = fit(student, objective, ds["train"], ds["val"], StagePlan(OptimConfig(epochs=1, max_steps=2),
              model_name="dccnn", model_kwargs={"convs": 3}, progress=False), tmp_path)
    assert res.history[0]["step"] == 2 and math.isfinite(res.history[0][f"kd/{name}"])
