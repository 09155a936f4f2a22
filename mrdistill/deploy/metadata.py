"""What an exported file records about itself (the sidecar JSON, also stored as ONNX metadata).

The training data config is the checkpoint's `data` record (`train.checkpoint.recorded_data`: mask
kind and acceleration, data mode, image size, data set kind); checkpoints without one get the
`DataConfig` defaults, recorded as such.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrdistill import __version__
from mrdistill.config import DataConfig
from mrdistill.train.checkpoint import recorded_data

NORMALISATION = (
    "k-space is divided by the volume's scale before the model sees it, and the output image is "
    "multiplied by it: for fastMRI files the file's `max` attribute (else the largest magnitude of "
    "the middle slice, root-sum-of-squares over coils, cropped to the recon size); the embedded "
    "training data have images scaled to max 1 per slice")


@dataclass
class TrainingData:
    """The data facts of a checkpoint's training config; `source` says where they came from."""

    mask_kind: str
    acceleration: float
    mode: str
    image_size: int | None
    dataset: str
    source: str


def training_data(ckpt: dict[str, Any], path: str | Path) -> TrainingData:
    """The mask kind, acceleration, data mode and size the checkpoint was trained with."""
    data = recorded_data(ckpt, path)
    if data is None:
        default = DataConfig()
        return TrainingData(default.mask.kind, default.mask.acceleration, default.mode, None,
                            default.dataset, "DataConfig defaults (the checkpoint has no data record)")
    return TrainingData(data.mask.kind, float(data.mask.acceleration), data.mode, data.image_size,
                        data.dataset, "the checkpoint's data record")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar(*, fmt: str, checkpoint: Path, ckpt: dict[str, Any], data: TrainingData, form: str,
            shape: tuple[int, int], coils: int, inputs: list[dict[str, Any]],
            outputs: list[dict[str, Any]], parity: dict[str, Any], exporter: dict[str, Any]) -> dict:
    """The JSON-ready record of one export."""
    return {
        "format": fmt,
        "mrdistill_version": __version__,
        "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint)},
        "model": {"name": ckpt["model_name"], "kwargs": dict(ckpt.get("model_kwargs", {}))},
        "training_data": {"mask_kind": data.mask_kind, "acceleration": data.acceleration,
                          "mode": data.mode, "image_size": data.image_size, "dataset": data.dataset,
                          "from": data.source},
        "grid": {"height": shape[0], "width": shape[1], "coils": coils},
        "data_consistency": {"form": form, "how": DC_FORM_TEXT[form]},
        "inputs": inputs,
        "outputs": outputs,
        "input_normalisation": NORMALISATION,
        "parity": parity,
        "exporter": exporter,
    }


DC_FORM_TEXT = {
    "column": "1-D column mask: DC as real matmuls along image rows, z @ G with "
              "G = F diag(mask) F^-1 built in the graph from the mask input (no DFT along H)",
    "grid": "2-D mask: centred orthonormal DFT as real matmuls along W and H, mask, inverse",
}
