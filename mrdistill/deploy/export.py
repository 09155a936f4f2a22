"""`mrdistill export`: a checkpoint -> an ONNX or TorchScript file with data consistency inside,
checked against the eager model before it is kept, plus a sidecar JSON (`<out>.json`).

The graph (`deploy.graphs`) is traced once at a fixed (H, W) and coil count (default: the
training data's; another count is refused) with a dynamic batch dimension; the DC form follows
the mask kind (the checkpoint's data record, or `mask_kind`): 1-D column masks -> "column"
(FFT-free row matmuls), 2-D masks -> "grid" (DFT as matmuls); VarNet and U-Net graphs
(`deploy.multicoil`) take whole 2-D DFTs (`fft`: matmuls by default, or ONNX's DFT operator). ONNX
uses the TorchScript-based exporter (opset 17): the graph holds only convs, matmuls and elementwise
ops, and it exports in seconds where the dynamo exporter took minutes on this machine.
Parity: on two real slices of the embedded corpus (`deploy.inputs`; with C coils, times C
simulated coil sensitivities), the exported file, loaded
back (ONNX Runtime / `torch.jit.load`), must match the eager model within `tolerance` (max abs
difference relative to the eager image max, for both outputs); otherwise nothing is written.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mrdistill.atomic import atomic_path, atomic_write_text
from mrdistill.config.deploy import EXPORT_FORMATS as FORMATS, EXPORT_TOLERANCE as DEFAULT_TOLERANCE
from mrdistill.rundir import check_output_file, check_writable
from mrdistill.deploy.graphs import COIL_GRAPH_FFT, build_graph
from mrdistill.deploy.inputs import ExampleBatch, example_batch
from mrdistill.deploy.metadata import TrainingData, sidecar, training_data
from mrdistill.deploy.projection import make_projection
from mrdistill.deploy.runtime import (INPUT_NAMES, OUTPUT_NAMES, Runner, onnx_runner, require_export_extra,
                                      torchscript_runner)
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.contract import declared
from mrdistill.physics.fft import magnitude
from mrdistill.physics.masks import make_mask
from mrdistill.train.checkpoint import load_checkpoint, model_from_checkpoint

OPSET = 17
MAX_SIDE = 4096
MAX_COILS = 64


@dataclass
class ExportResult:
    """Where the export went and how close it is to eager."""

    path: Path
    sidecar_path: Path
    parity: float
    tolerance: float
    form: str
    record: dict[str, Any]


def sidecar_path(out: str | Path) -> Path:
    """`<out>.json`, next to the exported file."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def trace_graph(graph: nn.Module, args: tuple[Tensor, ...], fmt: str, path: Path) -> None:
    """Write `graph` traced on `args` to `path` as ONNX (dynamic batch) or TorchScript."""
    names = list(INPUT_NAMES[:len(args)])
    with warnings.catch_warnings():
        # The tracer warns where Python branches on tensor shapes (channel count, H, W); those are
        # fixed in an exported graph by design, and the batch size is checked by the parity runs.
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(graph, args, check_trace=False), str(path))
            return
        axes = {name: {0: "batch"} for name in [*names, *OUTPUT_NAMES]}
        axes["mask"] = {0: "mask_batch"}  # one mask for the batch (1) or one per slice (N)
        torch.onnx.export(graph, args, str(path), input_names=names, output_names=list(OUTPUT_NAMES),
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def runner_for(fmt: str, path: str | Path) -> Runner:
    """The runtime that executes an exported file of this format."""
    return onnx_runner(path) if fmt == "onnx" else torchscript_runner(path)


def relative_error(got: tuple[Tensor, Tensor], reference: Tensor) -> float:
    """max |got - eager| / max |eager| over both outputs (image and raw)."""
    image, raw = got
    scored = magnitude(reference)
    return max(float((image - scored).abs().max() / scored.abs().max().clamp_min(1e-30)),
               float((raw - reference).abs().max() / reference.abs().max().clamp_min(1e-30)))


def eager_reference(model: nn.Module, example: ExampleBatch, with_smaps: bool, what: str) -> Tensor:
    """The eager model's image on the example; a shape it cannot take is a `MrdistillError`."""
    try:
        with torch.no_grad():
            return model(example.kspace, example.mask, **example.eager_kwargs(with_smaps)).image
    except (RuntimeError, ValueError) as exc:
        raise MrdistillError(f"{what}: the model cannot take this input "
                             f"({str(exc).splitlines()[0]})") from None


def export_coils(coils: int | None, data: TrainingData) -> int:
    """The coil count to export for: `coils`, else the training data's (else 1). A count other
    than the training data's is refused: the model never saw such k-space."""
    if coils is None:
        return 1 if data.coils is None else data.coils
    if data.coils is not None and coils != data.coils:
        raise MrdistillError(f"--coils {coils}: the model was trained on {data.coils}-coil k-space "
                             f"({data.dataset} data); export with --coils {data.coils}")
    return coils


def _check_grid(shape: tuple[int, int] | None, size: int | None, coils: int) -> tuple[int, int]:
    """The (H, W) to export at: `shape`, else the training image size; range-checked."""
    if shape is None:
        if size is None:
            raise MrdistillError("the checkpoint records no image size: give --shape H W")
        shape = (size, size)
    h, w = (int(s) for s in shape)
    if not (8 <= h <= MAX_SIDE and 8 <= w <= MAX_SIDE):
        raise MrdistillError(f"--shape must be two sides in 8..{MAX_SIDE}, got {h} {w}")
    if not 1 <= coils <= MAX_COILS:
        raise MrdistillError(f"--coils must be in 1..{MAX_COILS}, got {coils}")
    return h, w


def _is_export_record(side: Path) -> bool:
    """Whether `side` is a sidecar that `export` wrote (JSON with its format and version)."""
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and "mrdistill_version" in doc and doc.get("format") in FORMATS


def check_export_outputs(out: Path, side: Path, checkpoint: str | Path, overwrite: bool) -> None:
    """FILE and FILE.json may be neither the checkpoint (under any flag) nor, without
    `overwrite`, existing files; with it, only an earlier export (FILE next to the sidecar export
    wrote) is replaced: a file mrdistill did not write is named and kept."""
    for path in (out, side):
        check_output_file(path, [checkpoint])
    existing = [p for p in (out, side) if os.path.lexists(p)]
    if existing and not overwrite:
        raise MrdistillError(f"{existing[0]} exists: choose another --out or pass --overwrite")
    if existing and not _is_export_record(side):
        raise MrdistillError(f"{existing[0]} was not written by mrdistill export (no export record "
                             f"{side} next to it); --overwrite only replaces an earlier export, so "
                             f"remove it yourself or choose another --out")


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path, *,
                      shape: tuple[int, int] | None = None, coils: int | None = None,
                      mask_kind: str | None = None, tolerance: float = DEFAULT_TOLERANCE,
                      overwrite: bool = False, fft: str = COIL_GRAPH_FFT) -> ExportResult:
    """Export a checkpoint's model (see the module docstring); raises `MrdistillError` on bad
    input, an unexportable model, a coil count other than the training data's or a failed parity
    check, leaving nothing written. `coils` None: the training data's. `fft`: the 2-D transform
    of VarNet/U-Net graphs (`graphs.build_graph`)."""
    check_choice("export format", fmt, FORMATS)
    if not tolerance > 0:
        raise MrdistillError(f"--tolerance must be > 0, got {tolerance}")
    if fmt == "onnx":
        require_export_extra()
    out, side = Path(out), sidecar_path(out)
    check_export_outputs(out, side, checkpoint, overwrite)
    check_writable(out.parent)
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint)
    data = training_data(ckpt, checkpoint)
    coils = export_coils(coils, data)
    kind = mask_kind or data.mask_kind
    h, w = _check_grid(shape, data.image_size, coils)
    form = "column" if make_mask(kind, (h, w), data.acceleration, seed=0).shape[-2] == 1 else "grid"
    graph, with_smaps = build_graph(model, make_projection(form, h, w), coils, fft)
    graph.eval()
    complex_data = declared(model).complex_input
    example = example_batch(2, h, w, coils, complex_data, kind, data.acceleration)
    reference = eager_reference(model, example, with_smaps, f"{ckpt['model_name']} at {h}x{w}, {coils} coil(s)")
    args = example.graph_args(with_smaps)
    with atomic_path(out) as tmp:
        trace_graph(graph, args, fmt, tmp)
        got = runner_for(fmt, tmp)(*args)
        error = relative_error(got, reference)
        if not error <= tolerance:
            raise MrdistillError(f"parity check failed: the exported {fmt} graph differs from eager by "
                                 f"{error:.2e} of the image max (tolerance {tolerance:g}); nothing written")
        record = sidecar(
            fmt=fmt, checkpoint=checkpoint, ckpt=ckpt, data=data, form=form, shape=(h, w), coils=coils,
            inputs=io_contract(form, h, w, coils, with_smaps),
            outputs=outputs_contract(graph, model, h, w, got[1].shape[1]),
            parity={"max_abs_diff_relative_to_image_max": error, "tolerance": tolerance,
                    "inputs": example.description},
            exporter={"torch": torch.__version__, **({"onnx_opset": OPSET} if fmt == "onnx" else {})},
            how=graph_description(graph, fft))
        record["mask_kind_exported_for"] = kind
        if fmt == "onnx":
            embed_onnx_metadata(tmp, record)
        atomic_write_text(side, json.dumps(record, indent=2) + "\n")
    return ExportResult(out, side, error, tolerance, form, record)


def embed_onnx_metadata(path: Path, record: dict[str, Any]) -> None:
    """Store the sidecar's record in the ONNX file's metadata (key "mrdistill", JSON)."""
    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "mrdistill", json.dumps(record)
    onnx.save(model, str(path))


def io_contract(form: str, h: int, w: int, coils: int, with_smaps: bool) -> list[dict[str, Any]]:
    """The graph's inputs as recorded in the sidecar."""
    rows = "1" if form == "column" else str(h)
    spec = [
        {"name": "kspace", "shape": ["N", coils, h, w, 2], "dtype": "float32",
         "meaning": "acquired k-space (zeros where not sampled), centred, real/imaginary last, normalised"},
        {"name": "mask", "shape": ["1|N", 1, rows, w], "dtype": "float32",
         "meaning": "sampling mask, centred, 1 = sampled"},
    ]
    if with_smaps:
        spec.append({"name": "smaps", "shape": ["N", coils, h, w, 2], "dtype": "float32",
                     "meaning": "coil sensitivities, real/imaginary last"})
    return spec


FFT_TEXT = {"matmul": "real matmuls with constant DFT matrices", "operator": "ONNX's DFT operator"}


def graph_description(graph: nn.Module, fft: str) -> str | None:
    """The data-consistency text of graphs that describe themselves (VarNet, U-Net)."""
    how = getattr(graph, "how", None)
    return None if how is None else how.format(fft=FFT_TEXT[fft])


def outputs_contract(graph: nn.Module, model: nn.Module, h: int, w: int,
                     channels: int) -> list[dict[str, Any]]:
    """The graph's outputs as recorded in the sidecar (`channels`: of `raw`, as exported)."""
    raw_meaning = getattr(graph, "raw_meaning", None) or (
        "the network layout: real/imaginary channels in complex mode" if declared(model).complex_input
        else "the network layout: the real image")
    return [{"name": "image", "shape": ["N", 1, h, w], "dtype": "float32",
             "meaning": "the scored image: magnitude (root-sum-of-squares) in complex mode, "
                        "the real image in real mode; multiply by the volume scale"},
            {"name": "raw", "shape": ["N", channels, h, w], "dtype": "float32", "meaning": raw_meaning}]
