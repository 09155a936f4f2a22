"""Modules that are not mrdistill's, under its model contract.

A user's image-to-image network (any `nn.Module` mapping float (N, C_in, H, W) to (N, C_out, H, W))
becomes a reconstruction model with `ImageModel`; registered through a builder function it can be
a teacher or a student like any built-in model (docs/teachers.md):

    @register_model("mynet")
    def build_mynet(width: int = 32) -> nn.Module:
        return ImageModel(MyNet(width), input="complex")

`weights_root(model)` is the module whose state_dict a weights file holds and against whose module
paths feature-KD layer names are resolved: the wrapped network for an `ImageModel` (so keys and
paths are the user's own), the model itself otherwise.
"""

from __future__ import annotations

import importlib

from torch import Tensor, nn

from mrdistill.data.coils import rss
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule
from mrdistill.physics.fft import complex_to_channels, ifft2c

INPUTS = ("complex", "magnitude")


class ImageModel(ReconModule):
    """forward(kspace complex64 (N, C, H, W), mask, *, return_features) -> ReconOutput(net(x), {}).

    x is the zero-filled image: input "complex" = the C coil images as channels float32
    (N, 2C, H, W) ([real..., imag...]), "magnitude" = their root-sum-of-squares (N, 1, H, W).
    The network's output is the `image` (one channel = a magnitude, 2C = channels). It returns no
    named features of its own: feature KD names its layers by module path (`distill.hooks`).
    """

    def __init__(self, net: nn.Module, input: str = "complex") -> None:
        super().__init__()
        check_choice("ImageModel input", input, INPUTS)
        self.net, self.input = net, input
        # Contract values: complex k-space in; the network's layout is the user's, assumed
        # image-to-image (as many channels out as in).
        self.in_channels = self.image_channels = 2 if input == "complex" else 1

    @property
    def weights_root(self) -> nn.Module:
        return self.net

    def forward(self, kspace: Tensor, mask: Tensor | None = None, *,
                return_features: bool = False) -> ReconOutput:
        images = ifft2c(kspace)
        x = complex_to_channels(images) if self.input == "complex" else rss(images, dim=1, keepdim=True)
        return ReconOutput(image=self.net(x), features={})


def weights_root(model: nn.Module) -> nn.Module:
    """The module whose state_dict and module paths belong to the user (see the module docstring)."""
    root = getattr(model, "weights_root", model)
    return root if isinstance(root, nn.Module) else model


def import_plugins(modules: list[str]) -> None:
    """Import the user's Python modules (`plugins:` in a config) so their `@register_model`
    builders run; a module that cannot be imported raises `MrdistillError` naming it."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise MrdistillError(f"plugins: cannot import {name!r} ({exc}); is it on PYTHONPATH?") from None
