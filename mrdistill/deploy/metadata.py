"""What an exported file records about itself (the sidecar JSON, also stored as ONNX metadata).

The training data config is the checkpoint's `data` record (`train.checkpoint.recorded_data`: mask
kind and acceleration, data mode, image size, data set kind, coils); checkpoints without one get
the mask `predict` falls back to and the `DataConfig` defaults, recorded as such. The recorded
mask is the one `predict` draws by default (and the deploy script in docs/deploy.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrdistill import __version__
from mrdistill.config import DataConfig, PredictConfig
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
    mask: dict[str, Any]  # the training MaskConfig's fields that draw a mask (kind, acceleration, ...)
    coils: int | None  # k-space coils the model was trained on; None: not recorded (see `training_coils`)


MASK_FIELDS = ("kind", "acceleration", "center_fraction", "center_lines", "path")


def training_coils(data: DataConfig) -> int | None:
    """The coil count of a training config's k-space: the simulated coils of the embedded corpus,
    1 for fastMRI files combined into one virtual coil; None where files bring their own coils
    (fastMRI multi-coil with `coil_mode: multi`, prepared folders), which the config cannot say."""
    if data.dataset == "embedded":
        return data.coils
    if data.dataset == "fastmri" and data.fastmri.coil_mode == "combine":
        return 1
    return None


def training_data(ckpt: dict[str, Any], path: str | Path) -> TrainingData:
    """The mask kind, acceleration, data mode and size the checkpoint was trained with."""
    data = recorded_data(ckpt, path)
    if data is None:  # the mask predict falls back to, and the DataConfig defaults
        default = DataConfig(mask=PredictConfig().fallback_mask)
        return TrainingData(default.mask.kind, default.mask.acceleration, default.mode, None, default.dataset,
                            "the checkpoint has no data record: predict's fallback mask, DataConfig defaults",
                            mask_record(default), None)
    return TrainingData(data.mask.kind, float(data.mask.acceleration), data.mode, data.image_size,
                        data.dataset, "the checkpoint's data record", mask_record(data), training_coils(data))


def mask_record(data: DataConfig) -> dict[str, Any]:
    """The training mask as the sidecar records it (what `predict` draws by default)."""
    record = {k: getattr(data.mask, k) for k in MASK_FIELDS}
    record["acceleration"] = float(record["acceleration"])
    return record


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar(*, fmt: str, checkpoint: Path, ckpt: dict[str, Any], data: TrainingData, form: str,
            shape: tuple[int, int], coils: int, inputs: list[dict[str, Any]],
            outputs: list[dict[str, Any]], parity: dict[str, Any], exporter: dict[str, Any],
            how: str | None = None) -> dict:
    """The JSON-ready record of one export (`how`: the graph's own DC description, else the form's)."""
    return {
        "format": fmt,
        "mrdistill_version": __version__,
        "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint)},
        "model": {"name": ckpt["model_name"], "kwargs": dict(ckpt.get("model_kwargs", {}))},
        "training_data": {"mask_kind": data.mask_kind, "acceleration": data.acceleration,
                          "mask": data.mask, "coils": data.coils,
                          "mode": data.mode, "image_size": data.image_size, "dataset": data.dataset,
                          "from": data.source},
        "grid": {"height": shape[0], "width": shape[1], "coils": coils},
        "data_consistency": {"form": form, "how": how or DC_FORM_TEXT[form]},
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
