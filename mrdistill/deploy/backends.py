"""The ways a model can run, each as a ready-to-time call on one prepared batch.

- eager: the model itself under `torch.no_grad()` (on `--device`);
- fast: `optimise_for_inference` (the compiled CPU cascade path for DC-CNN; other models fall back
  to eager, which the description says);
- compile: `torch.compile` (inductor, frozen weights; needs a C++ compiler), on `--device`;
- torchscript / onnxruntime: the exported graph (`deploy.export`), written to a file and loaded
  back exactly as a deployment would (CPU);
- cuda: the eager model on the GPU (a device sync ends every timed call).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mrdistill.config.deploy import BACKENDS
from mrdistill.deploy.export import runner_for, trace_graph
from mrdistill.deploy.graphs import build_graph
from mrdistill.deploy.inputs import ExampleBatch
from mrdistill.deploy.projection import make_projection
from mrdistill.deploy.runtime import require_export_extra
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.accel import optimise_for_inference
from mrdistill.models.contract import declared



@dataclass
class Backend:
    """One model on one backend: `call()` runs the batch once; `sync` (or None) waits for the
    device; `device` is where it runs."""

    call: Callable[[], object]
    sync: Callable[[], None] | None
    device: str
    description: str
    setup_seconds: float


def check_backends(names: list[str], device: str) -> None:
    """`MrdistillError` for an unknown backend, a missing extra or an absent CUDA device, before
    anything is measured or written."""
    for name in names:
        check_choice("backend", name, BACKENDS)
    if "onnxruntime" in names:
        require_export_extra()
    if ("cuda" in names or device.startswith("cuda")) and not torch.cuda.is_available():
        raise MrdistillError("no CUDA device here: drop the cuda backend / --device cuda")


def _eager_call(model: nn.Module, batch: ExampleBatch, with_smaps: bool, device: str) -> Callable[[], object]:
    kspace, mask = batch.kspace.to(device), batch.mask.to(device)
    kwargs = {k: v.to(device) for k, v in batch.eager_kwargs(with_smaps).items()}

    def call() -> object:
        with torch.no_grad():
            return model(kspace, mask, **kwargs)
    return call


def build_backend(name: str, model: nn.Module, batch: ExampleBatch, device: str, workdir: Path,
                  label: str) -> Backend:
    """`name` (one of BACKENDS) for `model` (eval mode) on `batch`; files go under `workdir`."""
    start = time.perf_counter()
    with_smaps = batch.smaps is not None and declared(model).accepts_smaps
    if name in ("eager", "cuda", "compile"):
        where = "cuda" if name == "cuda" else device
        runnable = copy.deepcopy(model).to(where).eval()
        description = f"eager model on {where}"
        if name == "compile":
            runnable = compiled_model(runnable)
            description = f"torch.compile (inductor, frozen weights) on {where}"
        call = _eager_call(runnable, batch, with_smaps, where)
        sync = torch.cuda.synchronize if where.startswith("cuda") else None
        if name == "compile":
            call()  # compiling happens on the first call: part of setup, not of the timings
        return Backend(call, sync, where, description, time.perf_counter() - start)
    if name == "fast":
        fast = optimise_for_inference(model, batch.kspace, batch.mask)
        return Backend(_eager_call(fast, batch, False, "cpu"), None, "cpu",
                       fast.description,
                       time.perf_counter() - start)
    fmt = "onnx" if name == "onnxruntime" else "torchscript"
    h, w = batch.kspace.shape[-2:]
    form = "column" if batch.mask.shape[-2] == 1 else "grid"
    graph, with_smaps = build_graph(model, make_projection(form, h, w), batch.kspace.shape[1])
    args = batch.graph_args(with_smaps)
    path = workdir / f"{label}.{fmt}"
    trace_graph(graph.eval(), args, fmt, path)
    run = runner_for(fmt, path)
    description = f"exported graph ({form} DC) in {'ONNX Runtime (CPU)' if fmt == 'onnx' else 'torch.jit'}"
    return Backend(lambda: run(*args), None, "cpu", description, time.perf_counter() - start)


def compiled_model(model: nn.Module) -> nn.Module:
    """torch.compile with inductor weight freezing (constant-folded, prepacked weights, as for
    deployment). Sets inductor's process-wide `freezing` flag: a benchmark process setting."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model)
