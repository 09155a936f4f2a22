"""Foreign teachers: a fastMRI-format state_dict named in `distill.teacher` loads through the CLI,
is checked against the model, and distils into a small VarNet (smoke-sized, in-process)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from mrdistill.config import TeacherConfig, load_run_config
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model, registry
from mrdistill.models.foreign import import_plugins
from mrdistill.train.teachers import load_teacher, read_state_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The smoke preset's teacher in configs/varnet_kd.yaml.
SMOKE_TEACHER = {"num_cascades": 2, "chans": 4, "pools": 1, "sens_chans": 2, "sens_pools": 1}


def fastmri_file(path: Path, **kwargs: int) -> Path:
    """A plain state_dict as fastMRI's released `*_state_dict.pt` files are (torch.save of it)."""
    torch.save(build_model("varnet", seed=5, **kwargs).state_dict(), path)
    return path


def test_fastmri_state_dict_distils_into_a_small_varnet_through_the_cli(tmp_path, capsys) -> None:
    weights = fastmri_file(tmp_path / "varnet_state_dict.pt", **SMOKE_TEACHER)
    code, out, err = run_cli(["distill", "--config", CONFIGS / "varnet_kd.yaml", "--preset", "smoke",
                              "--set", f"out_dir={tmp_path}", "--set", f"distill.teacher.weights={weights}",
                              "--set", "distill.teacher.format=fastmri", "--no-progress"], capsys)
    assert code == 0, err
    run = tmp_path / "varnet_kd"
    header = (run / "log.csv").read_text().splitlines()[0]
    assert "kd/imitation" in header and "kd/hint3" in header  # output, image, bottleneck, coil-map terms
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["model_name"] == "varnet" and ckpt["model_kwargs"]["num_cascades"] == 1
    assert any(k.startswith("kd.hint2.regressors") for k in ckpt["extra"])  # the bottleneck adapter


def test_weights_that_do_not_fit_name_the_keys_and_exit_2(tmp_path, capsys) -> None:
    weights = fastmri_file(tmp_path / "other.pt", num_cascades=3, chans=4, pools=1, sens_chans=2,
                           sens_pools=1)
    code, _, err = run_cli(["distill", "--config", CONFIGS / "varnet_kd.yaml", "--preset", "smoke",
                            "--set", f"out_dir={tmp_path}", "--set", f"distill.teacher.weights={weights}",
                            "--set", "distill.teacher.format=fastmri"], capsys)
    assert code == 2
    assert "unexpected" in err and "cascades.2.dc_weight" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "varnet_kd").exists()  # nothing was created before the check


def test_shape_mismatch_names_the_parameter(tmp_path) -> None:
    weights = fastmri_file(tmp_path / "w.pt", **{**SMOKE_TEACHER, "chans": 6})
    spec = TeacherConfig(model="varnet", kwargs=SMOKE_TEACHER, weights=str(weights))
    with pytest.raises(MrdistillError, match=r"cascades\.0\.model\.unet\..* has shape"):
        load_teacher(spec)


def test_lightning_checkpoint_and_bad_files(tmp_path) -> None:
    model = build_model("varnet", seed=1, **SMOKE_TEACHER)
    torch.save({"state_dict": {f"varnet.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
               tmp_path / "lightning.ckpt")
    teacher = load_teacher(TeacherConfig("varnet", SMOKE_TEACHER, str(tmp_path / "lightning.ckpt")))
    assert torch.equal(teacher.cascades[0].dc_weight, model.cascades[0].dc_weight)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(MrdistillError, match="not a state_dict"):
        read_state_dict(tmp_path / "list.pt", "fastmri")
    with pytest.raises(MrdistillError, match="not found"):
        read_state_dict(tmp_path / "missing.pt", "fastmri")
    with pytest.raises(MrdistillError, match="format"):
        read_state_dict(tmp_path / "list.pt", "onnx")


def test_teacher_is_a_path_or_a_mapping() -> None:
    assert load_run_config(None, ["distill.teacher=runs/t/best.pt"]).distill.teacher == "runs/t/best.pt"
    cfg = load_run_config(None, ["distill.teacher.model=varnet", "distill.teacher.weights=w.pt"])
    assert cfg.distill.teacher == TeacherConfig(model="varnet", weights="w.pt")
    with pytest.raises(MrdistillError, match="distill.teacher: unknown key 'wieghts'"):
        load_run_config(None, ["distill.teacher.wieghts=w.pt"])
    with pytest.raises(MrdistillError, match="distill.teacher: expected str or a mapping"):
        load_run_config(None, ["distill.teacher=3"])


PLUGIN = '''
from torch import nn
from mrdistill.models import register_model
from mrdistill.models.foreign import ImageModel


class MyNet(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(width, 2, 1)

    def forward(self, x):
        return x + self.head(self.body(x))


@register_model("h16_mynet")
def build_mynet(width: int = 4):
    return ImageModel(MyNet(width), input="complex")
'''


def test_a_plugin_builder_gives_a_teacher_from_its_own_state_dict(tmp_path, monkeypatch) -> None:
    """docs/teachers.md's example: a user's module registered by a builder in a plugin module, its
    plain state_dict (the wrapped network's own keys) loaded as a foreign teacher."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # the registration stays here
    (tmp_path / "h16_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "h16_plugin", raising=False)
    import_plugins(["h16_plugin"])
    net = build_model("h16_mynet", seed=3, width=6)
    torch.save(net.net.state_dict(), tmp_path / "mynet.pt")
    assert "body.0.weight" in torch.load(tmp_path / "mynet.pt", weights_only=True)
    teacher = load_teacher(TeacherConfig("h16_mynet", {"width": 6}, str(tmp_path / "mynet.pt")))
    assert torch.equal(teacher.net.head.weight, net.net.head.weight)
    with pytest.raises(MrdistillError, match="plugins: cannot import 'no_such_plugin'"):
        import_plugins(["no_such_plugin"])
