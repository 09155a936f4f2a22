"""Mutated and truncated input files for every reader, and one call that reads a file the way a
command does. Shared by tests/reliability/test_fuzz_readers.py (bounded, in `make test`) and
benchmarks/fuzz.py (10,000 files).

A "reader" here is everything that opens a user file: fastMRI HDF5 (metadata under the time limit,
then every slice as the data set builds it), prepared-folder manifests, prediction files (evaluate),
NIfTI (.nii and .nii.gz), NPY, DICOM, PNG, JPG, fixed-mask .npy files and checkpoints. The contract checked:
the reader returns a valid result or raises `MrdistillError`, and returns within the time limit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import (phantom, write_dicom_series, write_fastmri_volume,  # noqa: E402
                             write_nifti, write_png_folder)

from mrdistill.config import DataConfig, FastMRIConfig, MaskConfig  # noqa: E402
from mrdistill.data.fastmri import FastMRISliceDataset  # noqa: E402
from mrdistill.data.fastmri_io import (PREDICTION_KEY, inspect_file_limited,  # noqa: E402
                                       read_headers, read_volume_array, write_reconstruction)
from mrdistill.data.prepared import MANIFEST, MANIFEST_FORMAT, read_manifest  # noqa: E402
from mrdistill.data.volumes import find_inputs, read_volume  # noqa: E402
from mrdistill.errors import MrdistillError  # noqa: E402
from mrdistill.models import build_model  # noqa: E402
from mrdistill.physics.masks import make_mask  # noqa: E402
from mrdistill.train.checkpoint import load_model, model_payload, save_checkpoint  # noqa: E402

# reader kind -> file suffix of its seed file
KINDS = {"fastmri": ".h5", "fastmri_multicoil": ".h5", "fastmri_test": ".h5", "prediction": ".h5",
         "manifest": ".json", "nifti": ".nii", "nifti_gz": ".nii.gz", "npy": ".npy",
         "dicom": ".dcm", "png": ".png", "jpg": ".jpg", "mask": ".npy", "checkpoint": ".pt"}


def write_seeds(folder: Path) -> dict[str, bytes]:
    """One small valid file per reader kind; returns the bytes of each (the fuzz mutates them)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "fastmri": write_fastmri_volume(folder / "sc.h5", slices=2, height=16, width=12, recon=(8, 8)),
        "fastmri_multicoil": write_fastmri_volume(folder / "mc.h5", slices=2, coils=2, height=16,
                                                  width=12, recon=(8, 8)),
        "fastmri_test": write_fastmri_volume(folder / "test.h5", slices=2, height=16, width=12,
                                             recon=(8, 8), test_acceleration=4),
        "nifti": write_nifti(folder / "v.nii", shape=(12, 10, 3)),
        "nifti_gz": write_nifti(folder / "v.nii.gz", shape=(12, 10, 3)),
    }
    write_reconstruction(folder / "pred.h5", phantom(2, 8, 8))
    paths["prediction"] = folder / "pred.h5"
    manifest = {"format": MANIFEST_FORMAT, "mode": "real", "coils": 1, "inputs": [], "files": {}}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    paths["manifest"] = folder / MANIFEST
    np.save(folder / "v.npy", phantom(2, 10, 8))
    paths["npy"] = folder / "v.npy"
    dcm = write_dicom_series(folder / "dicom", n=1, size=(10, 8))
    paths["dicom"] = next(dcm.iterdir())
    png = write_png_folder(folder / "png", n=1, size=(10, 8))
    paths["png"] = next(png.iterdir())
    Image.fromarray((phantom(1, 10, 8)[0] * 255).astype(np.uint8)).save(folder / "v.jpg", quality=90)
    paths["jpg"] = folder / "v.jpg"
    np.save(folder / "mask.npy", np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1], dtype=bool))
    paths["mask"] = folder / "mask.npy"
    kw = {"cascades": 1, "convs": 2, "channels": 4}
    paths["checkpoint"] = folder / "model.pt"
    save_checkpoint(paths["checkpoint"], model_payload(build_model("dccnn", seed=0, **kw), "dccnn", kw))
    return {kind: Path(p).read_bytes() for kind, p in paths.items()}


MUTATIONS = ("flip", "insert", "delete", "truncate", "overwrite", "duplicate")


def mutate(data: bytes, ops: list[tuple[str, float, int]]) -> bytes:
    """Apply mutations in turn: (kind, position as a fraction of the length, byte value or length).

    flip: xor one byte with value (1..255); insert: one byte; delete: `value % 64 + 1` bytes;
    truncate: keep the bytes before the position; overwrite: `value % 16 + 1` bytes of 0xff;
    duplicate: repeat `value % 64 + 1` bytes in place."""
    out = bytearray(data)
    for kind, where, value in ops:
        pos = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[pos] ^= (value % 255) + 1
        elif kind == "insert":
            out[pos:pos] = bytes([value % 256])
        elif kind == "delete":
            del out[pos:pos + value % 64 + 1]
        elif kind == "truncate":
            del out[pos:]
        elif kind == "overwrite":
            n = value % 16 + 1
            out[pos:pos + n] = b"\xff" * n
        elif kind == "duplicate":
            out[pos:pos] = out[pos:pos + value % 64 + 1]
    return bytes(out)


def read_as(kind: str, path: Path, time_limit: float) -> str:
    """Read `path` as `kind` completely, the way commands do; returns a short description of a
    valid result (checked here) or raises what the reader raises."""
    if kind.startswith("fastmri"):
        info = inspect_file_limited(path, time_limit)
        cfg = DataConfig(mode="complex", mask=MaskConfig(kind="random", acceleration=2.0, center_lines=2),
                         fastmri=FastMRIConfig(coil_mode="multi" if info.coils else "combine"))
        ds = FastMRISliceDataset([info], cfg, "val")
        for i in range(len(ds)):
            s = ds[i]
            assert s.kspace.isfinite().all() and s.zero_filled.isfinite().all() and s.mask.any()
        return f"{len(ds)} slices"
    if kind == "prediction":  # as evaluate reads it: the header under the time limit, then the array
        (header,) = list(read_headers([path], time_limit))
        if isinstance(header, MrdistillError):
            raise header
        array = read_volume_array(path, PREDICTION_KEY)
        return f"array {array.shape}"
    if kind == "manifest":
        doc = read_manifest(path.parent)
        assert doc["mode"] in ("real", "complex") and doc["coils"] >= 1
        return "manifest"
    if kind == "checkpoint":  # as predict, evaluate and export read it
        model = load_model(path)
        assert all(bool(p.isfinite().all()) for p in model.parameters())
        return "checkpoint"
    if kind == "mask":
        mask = make_mask("fixed", (10, 12), 4.0, seed=0, path=str(path))
        assert mask.any()
        return "mask"
    (item,) = find_inputs(path)
    vol = read_volume(item)
    assert vol.data.dtype == np.float32 and vol.data.ndim == 3 and np.isfinite(vol.data).all()
    assert vol.data.max() > 0
    return f"{item.kind} {vol.data.shape}"
