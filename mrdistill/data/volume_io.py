"""Writing results in the geometry and format family of the input volume (`mrdistill predict`).

NIfTI in -> NIfTI out (same affine and axis order); DICOM series -> NIfTI (affine from the DICOM
geometry: writing DICOM would need a full, valid header per slice, which a reconstruction does not
have); PNG/JPG folder -> a folder of PNGs with the same names and bit depth (JPG becomes PNG:
lossless); NPY -> NPY float32. When the output has another in-plane size (super-resolution), the
affine's in-plane voxel sizes are divided by the size ratio.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from mrdistill.atomic import atomic_dir, atomic_path, atomic_write_bytes
from mrdistill.data.volumes import ImageVolume
from mrdistill.errors import MrdistillError


def _scaled_affine(affine: np.ndarray, in_plane_axes: tuple[int, int], ratio: tuple[float, float]) -> np.ndarray:
    out = np.array(affine, dtype=float)
    for axis, r in zip(in_plane_axes, ratio):
        out[:3, axis] = out[:3, axis] / r
    return out


def output_path(kind: str, name: str, out_dir: str | Path) -> Path:
    """Where `write_like` writes the result of an input volume of this kind and name."""
    out_dir = Path(out_dir)
    if kind == "npy":
        return out_dir / f"{name}.npy"
    if kind == "images":
        return out_dir / name
    return out_dir / f"{name}.nii.gz"


def write_like(volume: ImageVolume, data: np.ndarray, out_dir: str | Path) -> Path:
    """Write `data` float (S, H, W) (same slice count as the input) next to its siblings in
    `out_dir`, in the input's format family, atomically (a file or folder appears complete or not
    at all); returns the written file or folder (`output_path`)."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3 or data.shape[0] != volume.data.shape[0]:
        raise MrdistillError(f"{volume.source}: expected {volume.data.shape[0]} output slices, got shape {data.shape}")
    ratio = (data.shape[1] / volume.data.shape[1], data.shape[2] / volume.data.shape[2])
    path = output_path(volume.kind, volume.name, out_dir)
    if volume.kind == "npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, data if volume.meta.get("ndim", 3) == 3 else data[0])
        return path
    if volume.kind == "images":
        return _write_images(volume, data, path)
    if volume.kind == "nifti":
        axis = int(volume.meta["slice_axis"])
        arr = np.moveaxis(data, 0, axis)
        if volume.meta.get("ndim", 3) == 2:
            arr = arr[..., 0]
        planes = tuple(a for a in range(3) if a != axis)
        affine = _scaled_affine(volume.meta["affine"], planes, ratio)  # type: ignore[arg-type]
        header = volume.meta["header"].copy()
    else:  # dicom: (rows, columns, slices)
        arr = np.moveaxis(data, 0, -1)
        affine = _scaled_affine(volume.meta["affine"], (0, 1), ratio)
        header = None
    img = nib.Nifti1Image(arr, affine, header)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)  # values as they are, no integer scaling
    # nibabel picks the format from the file name, which a temporary name hides: serialise, then
    # gzip as nibabel does for .nii.gz (mtime 0: the same volume gives the same bytes)
    atomic_write_bytes(path, gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))
    return path


def _write_images(volume: ImageVolume, data: np.ndarray, folder: Path) -> Path:
    bits = int(volume.meta.get("bits", 8))
    top = 255 if bits == 8 else 65535
    values = np.clip(np.rint(data), 0, top).astype(np.uint8 if bits == 8 else np.uint16)
    with atomic_dir(folder) as tmp:
        for name, plane in zip(volume.meta["files"], values):
            Image.fromarray(plane).save(tmp / (Path(name).stem + ".png"))
    return folder
