"""What an exported file records about itself (the sidecar JSON, also stored as ONNX metadata).

The training data config is read from the checkpoint's "config" entry where it has one (the
resolved run config: `data.mask.kind`, `data.mask.acceleration`, `data.mode`, `data.image_size`,
`data.dataset`); otherwise the `DataConfig` defaults are used and recorded as such.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrdistill import __version__
from mrdistill.config import DataConfig

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


def _get(tree: Any, *keys: str) -> Any:
    """tree[k1][k2]... or None where any level is missing or not a dict."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def training_data(ckpt: dict[str, Any]) -> TrainingData:
    """The mask kind, acceleration, data mode and size the checkpoint was trained with."""
    cfg = ckpt.get("config")
    default = DataConfig()
    found = _get(cfg, "data", "mask", "kind")
    if found is None:
        return TrainingData(default.mask.kind, default.mask.acceleration, default.mode, None,
                            default.dataset, "DataConfig defaults (the checkpoint has no config)")
    size = _get(cfg, "data", "image_size")
    return TrainingData(
        mask_kind=str(found),
        acceleration=float(_get(cfg, "data", "mask", "acceleration") or default.mask.acceleration),
        mode=str(_get(cfg, "data", "mode") or default.mode),
        image_size=int(size) if isinstance(size, int) else None,
        dataset=str(_get(cfg, "data", "dataset") or default.dataset),
        source="the checkpoint's training config")


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
