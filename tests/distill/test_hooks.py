"""Feature KD on layers named by module path, for models mrdistill does not know (forward hooks)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import multicoil_batch, synthetic_batch
from mrdistill.distill import DistillObjective, build_kd
from mrdistill.distill.hooks import FeatureHooks, as_feature
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.models.foreign import ImageModel


class TinyNet(nn.Module):
    """A user's own image-to-image network (not in mrdistill's registry)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(width, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.head(self.body(x))


def models() -> tuple[ImageModel, ImageModel]:
    torch.manual_seed(0)
    return ImageModel(TinyNet(4)), ImageModel(TinyNet(8)).eval()


def test_hooks_capture_the_module_output_only_while_capturing() -> None:
    student, _ = models()
    batch = synthetic_batch(complex_input=True)
    hooks = FeatureHooks(student, ["body.1"])
    with hooks.capture() as captured:
        student(batch.kspace, batch.mask)
    expected = student.net.body[:2](batch.zero_filled)
    torch.testing.assert_close(captured["body.1"], expected)
    with hooks.capture() as again:
        pass
    assert again == {}
    hooks.remove()
    with hooks.capture() as after:
        student(batch.kspace, batch.mask)
    assert after == {}


def test_hint_by_module_path_trains_the_student_layers_on_both_foreign_models() -> None:
    student, teacher = models()
    batch = synthetic_batch(complex_input=True)
    kd = build_kd("hint", pairs={"body.3": "body.3"})  # 4 -> 8 channels: a 1x1 adapter
    objective = DistillObjective(teacher, {"hint": (kd, 1.0)}, task_weight=0.0)
    objective.setup(student, batch)
    assert kd.regressors["0"].in_channels == 4 and kd.regressors["0"].out_channels == 8
    out = objective(student, batch)
    assert out["kd/hint"] > 0
    out["loss"].backward()
    # The KD term alone (task weight 0) reaches the hooked student layers, not the teacher's.
    assert student.net.body[0].weight.grad.abs().sum() > 0
    assert student.net.head.weight.grad is None  # after the hooked layer: untouched by the hint
    assert all(p.grad is None for p in teacher.parameters())


def test_module_paths_mix_with_returned_features() -> None:
    """A registered student's own feature keys and a foreign teacher's module paths in one pair set."""
    student = build_model("dccnn", cascades=1, convs=3, channels=4, in_channels=2, seed=0)
    _, teacher = models()
    batch = synthetic_batch(complex_input=True)
    kd = build_kd("hint", pairs={"cascade1.conv2": "body.1", "cascades.0.convs.1": "body.3"})
    objective = DistillObjective(teacher, {"hint": (kd, 1.0)})
    objective.setup(student, batch)
    assert torch.isfinite(objective(student, batch)["loss"])


def test_an_unknown_key_is_a_clear_error() -> None:
    student, teacher = models()
    kd = build_kd("hint", pairs={"body.9": "body.3"})
    with pytest.raises(MrdistillError, match="body.9"):
        DistillObjective(teacher, {"hint": (kd, 1.0)}).setup(student, synthetic_batch(complex_input=True))


def test_complex_outputs_become_channels() -> None:
    z = torch.randn(2, 3, 4, 4, dtype=torch.complex64)
    assert as_feature((z, None), "x").shape == (2, 6, 4, 4)


def test_varnet_layers_by_path_as_in_docs() -> None:
    """fastMRI-style paths ("cascades.1.model": a cascade's normalised U-Net) on a VarNet teacher."""
    batch = multicoil_batch()
    small = {"chans": 2, "pools": 1, "sens_chans": 2, "sens_pools": 1}
    student = build_model("varnet", num_cascades=1, seed=0, **small)
    teacher = build_model("varnet", num_cascades=2, seed=1, **small).eval()
    kd = build_kd("hint", pairs={"cascade1.image": "cascades.1.model", "cascades.0.model.unet": "cascade2.image"},
                  regressor=False)
    objective = DistillObjective(teacher, {"hint": (kd, 1.0)})
    objective.setup(student, batch)
    out = objective(student, batch)
    assert torch.isfinite(out["kd/hint"]) and out["kd/hint"] > 0
