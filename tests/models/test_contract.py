"""The declared model contract (`models.contract`): every registered model, and a plugin model,
declares it, and what it declares is what it does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrdistill.deploy.graphs import build_graph
from mrdistill.deploy.projection import make_projection
from mrdistill.errors import MrdistillError
from mrdistill.models import ReconOutput, build_model, list_models
from mrdistill.models.contract import ReconModel, ReconModule, declared
from mrdistill.models.foreign import ImageModel

# Small constructor arguments per built-in model (any other registered model is built with its
# defaults); the SR entries are the same models at scale 2.
SMALL = {
    "dccnn": {"cascades": 2, "convs": 3, "channels": 8},
    "modl": {"unrolls": 1, "convs": 2, "channels": 4, "cg_iters": 2},
    "vdsr": {"layers": 3, "channels": 4},
    "swinir": {"embed_dim": 8, "groups": 1, "depth": 1, "heads": 2, "window": 4},
    "chpnet": {"channels": 4, "levels": 2, "iterations": 1},
    "unet": {"chans": 4, "num_pool_layers": 2},
    "varnet": {"num_cascades": 1, "sens_chans": 2, "sens_pools": 1, "chans": 2, "pools": 1},
    "ensemble": {"member": "dccnn", "members": 2, "member_kwargs": {"cascades": 1, "convs": 2, "channels": 4}},
}
SR = [("vdsr", 2), ("swinir", 2), ("chpnet", 2)]
SIZE = 32


def _run(model: nn.Module) -> ReconOutput:
    """The model on the input its contract asks for, with features."""
    c = declared(model)
    g = torch.Generator().manual_seed(0)
    if c.input_kind == "lowres":
        lowres = torch.rand(1, c.in_channels, SIZE // c.scale, SIZE // c.scale, generator=g)
        return model(lowres, None, return_features=True)
    kspace = torch.randn(1, c.images, SIZE, SIZE, dtype=torch.complex64, generator=g)
    mask = torch.zeros(1, 1, 1, SIZE)
    mask[..., ::2] = 1
    return model(kspace, mask, return_features=True)


def _check(model: nn.Module) -> None:
    assert isinstance(model, ReconModel)  # every attribute is declared
    c = declared(model)
    with torch.no_grad():
        out = _run(model)
    assert isinstance(out, ReconOutput) and isinstance(out.features, dict)
    assert out.image.shape == (1, c.image_channels, SIZE, SIZE)
    assert c.complex_input or c.in_channels == 1


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_declares_the_contract(name: str) -> None:
    _check(build_model(name, seed=0, **SMALL.get(name, {})))


@pytest.mark.parametrize("name, scale", SR)
def test_super_resolution_models_declare_their_scale(name: str, scale: int) -> None:
    model = build_model(name, seed=0, scale=scale, **SMALL[name])
    assert declared(model).input_kind == "lowres" and declared(model).scale == scale
    _check(model)


@pytest.mark.parametrize("name", ["dccnn", "modl", "vdsr", "swinir", "chpnet", "unet", "varnet"])
def test_exportable_is_what_export_builds(name: str) -> None:
    """`exportable` says whether `deploy.graphs.build_graph` makes a graph of the model (a model
    given an export graph must also declare it, and the reverse)."""
    model = build_model(name, seed=0, **SMALL[name])
    try:
        build_graph(model, make_projection("column", SIZE, SIZE), 1)
        built = True
    except MrdistillError:
        built = False
    assert declared(model).exportable is built


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class _Bare(nn.Module):
    """A plugin model that follows the forward contract but declares nothing."""

    def forward(self, kspace, mask, *, return_features=False):  # noqa: ANN001, ANN201
        return ReconOutput(torch.fft.ifft2(kspace).real.repeat(1, 2, 1, 1), {})


def test_plugin_models_satisfy_the_contract() -> None:
    _check(ImageModel(_Net(), input="complex"))
    bare = _Bare()
    assert not isinstance(bare, ReconModel)
    # Undeclared values are ReconModule's defaults (a complex single-coil k-space model).
    assert declared(bare) == declared(ReconModule())
    _check_output = _run(bare)
    assert _check_output.image.shape[1] == declared(bare).image_channels


def test_a_value_outside_the_contract_is_refused() -> None:
    for attr, value, match in (("input_kind", "image", "input_kind"), ("in_channels", 0, "in_channels"),
                               ("accepts_smaps", "yes", "accepts_smaps"), ("scale", 2, "scale >= 2")):
        model = ImageModel(_Net())
        setattr(model, attr, value)
        with pytest.raises(MrdistillError, match=match):
            declared(model)
