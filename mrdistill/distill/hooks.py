"""Features named by module path, captured with forward hooks (torchdistill's idea, not its code).

Built-in models return their features explicitly (`ReconOutput.features`, keys like
"cascade3.conv2"). A teacher or student that is not mrdistill's returns none, so feature-KD pairs
may name layers instead: `{"net.body.4": "cascades.3.model"}`. A key that is not one of the model's
returned features but is a submodule path of `models.foreign.weights_root(model)` is captured from
that module's output during the forward pass, on student and teacher alike (the student's capture
keeps its graph, so the KD loss trains the layers that produced it).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput
from mrdistill.models.foreign import weights_root
from mrdistill.physics.fft import complex_to_channels


def as_feature(output: Any, path: str) -> Tensor:
    """A module's output as a float feature (N, C, ...): the first tensor of a tuple/list, complex
    tensors as [real..., imag...] channels."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if isinstance(output, ReconOutput):
        output = output.image
    if not isinstance(output, Tensor):
        raise MrdistillError(f"feature {path!r}: the module returns {type(output).__name__}, not a tensor")
    return complex_to_channels(output) if output.is_complex() else output


def module_paths(model: nn.Module) -> dict[str, nn.Module]:
    """{dotted path: submodule} below `weights_root(model)` (the root itself excluded)."""
    return {name: m for name, m in weights_root(model).named_modules() if name}


def hooked_keys(model: nn.Module, keys: list[str], features: dict[str, Tensor]) -> list[str]:
    """The keys among `keys` to capture by hook: not returned features, but module paths (a key that
    is neither is left to the KD term, whose error names the valid features)."""
    paths = module_paths(model)
    return [key for key in keys if key not in features and key in paths]


class FeatureHooks:
    """Forward hooks on the submodules `paths` of `model` that record their outputs while
    `capture()` is active (and do nothing otherwise). `remove()` takes the hooks off."""

    def __init__(self, model: nn.Module, paths: list[str]) -> None:
        modules = module_paths(model)
        self.paths = list(paths)
        self._store: dict[str, Tensor] | None = None
        self._handles = [modules[p].register_forward_hook(self._recorder(p)) for p in self.paths]

    def _recorder(self, path: str):  # noqa: ANN202 (a forward-hook closure)
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if self._store is not None:
                self._store[path] = as_feature(output, path)
        return record

    @contextmanager
    def capture(self) -> Iterator[dict[str, Tensor]]:
        """Record during the `with` block into the yielded dict {path: feature}."""
        self._store = {}
        try:
            yield self._store
        finally:
            self._store = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def run_hooked(run: Any, hooks: FeatureHooks | None) -> ReconOutput:
    """`run()` (a model call returning `ReconOutput`) with the hooked outputs added to its features."""
    if hooks is None or not hooks.paths:
        return run()
    with hooks.capture() as captured:
        out = run()
    missing = [p for p in hooks.paths if p not in captured]
    if missing:
        raise MrdistillError(f"module {missing[0]!r} did not run in the forward pass")
    return ReconOutput(out.image, {**out.features, **captured})


def pair_keys(terms: nn.ModuleDict) -> tuple[list[str], list[str]]:
    """(student keys, teacher keys) of every KD term with `pairs` {student_key: teacher_key}."""
    student: list[str] = []
    teacher: list[str] = []
    for module in terms.values():
        pairs = getattr(module, "pairs", None)
        if isinstance(pairs, dict):
            student += [k for k in pairs if k not in student]
            teacher += [v for v in pairs.values() if v not in teacher]
    return student, teacher


@torch.no_grad()
def attach_for_pairs(student_model: nn.Module, teacher_model: nn.Module, terms: nn.ModuleDict,
                     student_out: ReconOutput, teacher_out: ReconOutput
                     ) -> tuple[FeatureHooks | None, FeatureHooks | None]:
    """Hooks for the pair keys that are module paths (None where there are none)."""
    s_keys, t_keys = pair_keys(terms)
    s_paths = hooked_keys(student_model, s_keys, student_out.features)
    t_paths = hooked_keys(teacher_model, t_keys, teacher_out.features)
    return (FeatureHooks(student_model, s_paths) if s_paths else None,
            FeatureHooks(teacher_model, t_paths) if t_paths else None)
