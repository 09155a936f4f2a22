"""Image volumes from files: NIfTI (nibabel), DICOM series (pydicom), PNG/JPG folders (Pillow), NPY.

`find_inputs(path)` says what a path holds (files and folders, searched recursively) without
reading pixel data; `read_volume(item)` reads one volume as float32 (S, H, W) slices plus what is
needed to write results in the same geometry (`volume_io.write_like`). fastMRI HDF5 files are
found here too (kind "fastmri") but read by `data.fastmri`.

Slices: NIfTI along `slice_axis` (default 2, the third array axis); NPY `(S, H, W)` (or one
`(H, W)` slice); DICOM files of one series sorted by position along the slice normal
(ImagePositionPatient . (row x column cosines)), else by InstanceNumber; image files in natural
name order (img2 before img10). Every problem raises `MrdistillError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrdistill.errors import MrdistillError

H5_SUFFIXES = (".h5", ".hdf5")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SUPPORTED = ".h5, .nii, .nii.gz, .npy, .dcm (DICOM), .png, .jpg"


@dataclass(frozen=True)
class InputItem:
    """One volume to read: kind ("fastmri", "nifti", "npy", "dicom", "images"), where, a name
    (unique among the items of one search) and, for DICOM series and image folders, the files."""

    kind: str
    path: Path
    name: str
    files: tuple[Path, ...] = ()


@dataclass
class ImageVolume:
    """Slices float32 (S, H, W) in the file's intensity units, and what the writers need."""

    name: str
    kind: str
    source: Path
    data: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _volume_name(path: Path) -> str:
    name = path.name
    for suf in (".nii.gz", ".nii", ".npy", ".h5", ".hdf5", ".dcm"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def natural_key(path: Path) -> list[Any]:
    """Sort key that orders numbers inside names by value: img2 < img10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _is_dicom(path: Path) -> bool:
    """A .dcm file, or a suffix-less file with the DICOM preamble ("DICM" at byte 128)."""
    if _suffix(path) == ".dcm":
        return True
    if path.suffix:
        return False
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_series(files: list[Path]) -> dict[str, list[Path]]:
    """Files grouped by SeriesInstanceUID (files whose header cannot be read join group "")."""
    import pydicom

    groups: dict[str, list[Path]] = {}
    for f in files:
        try:
            uid = str(pydicom.dcmread(f, stop_before_pixels=True).get("SeriesInstanceUID", ""))
        except Exception:  # noqa: BLE001 - any unreadable file is reported when the series is read
            uid = ""
        groups.setdefault(uid, []).append(f)
    return groups


def _items_in_folder(folder: Path, root: Path) -> list[InputItem]:
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=natural_key)
    rel = folder.relative_to(root).as_posix() if folder != root else folder.name
    label = rel.replace("/", "_") or folder.name
    items: list[InputItem] = []
    images, dicoms = [], []
    for p in entries:
        if not p.is_file():
            continue
        suf = _suffix(p)
        if suf in H5_SUFFIXES:
            items.append(InputItem("fastmri", p, _volume_name(p)))
        elif suf in NIFTI_SUFFIXES:
            items.append(InputItem("nifti", p, _volume_name(p)))
        elif suf == ".npy":
            items.append(InputItem("npy", p, _volume_name(p)))
        elif suf in IMAGE_SUFFIXES:
            images.append(p)
        elif _is_dicom(p):
            dicoms.append(p)
    if images:
        items.append(InputItem("images", folder, label, tuple(images)))
    series = _dicom_series(dicoms) if dicoms else {}
    for k, (_, files) in enumerate(sorted(series.items())):
        name = label if len(series) == 1 else f"{label}_series{k + 1}"
        items.append(InputItem("dicom", folder, name, tuple(sorted(files, key=natural_key))))
    for p in entries:
        if p.is_dir():
            items += _items_in_folder(p, root)
    return items


def find_inputs(path: str | Path) -> list[InputItem]:
    """The volumes a file or folder holds (folders searched recursively; no pixel data read).

    Raises `MrdistillError` if the path does not exist, is an unsupported file, or is a folder
    without any supported file.
    """
    path = Path(path)
    if not path.exists():
        raise MrdistillError(f"{path}: not found")
    if path.is_file():
        suf = _suffix(path)
        kind = {".nii": "nifti", ".nii.gz": "nifti", ".npy": "npy", ".h5": "fastmri",
                ".hdf5": "fastmri"}.get(suf)
        if kind is not None:
            return [InputItem(kind, path, _volume_name(path))]
        if suf in IMAGE_SUFFIXES:
            return [InputItem("images", path.parent, _volume_name(path), (path,))]
        if _is_dicom(path):
            return [InputItem("dicom", path.parent, _volume_name(path), (path,))]
        raise MrdistillError(f"{path}: unsupported file type (supported: {SUPPORTED})")
    items = _items_in_folder(path, path)
    if not items:
        raise MrdistillError(f"{path}: empty folder or no supported files in it (supported: {SUPPORTED})")
    seen: dict[str, int] = {}
    out = []
    for it in items:  # unique names: they become output file names
        seen[it.name] = seen.get(it.name, 0) + 1
        name = it.name if seen[it.name] == 1 else f"{it.name}-{seen[it.name]}"
        out.append(InputItem(it.kind, it.path, name, it.files))
    return out


# ---------------------------------------------------------------- readers


def _check_values(data: np.ndarray, where: Path) -> np.ndarray:
    if not np.isfinite(data).all():
        raise MrdistillError(f"{where}: contains NaN or Inf values")
    if not np.any(data):
        raise MrdistillError(f"{where}: every value is zero (no image)")
    return np.ascontiguousarray(data, dtype=np.float32)


def _read_nifti(item: InputItem, slice_axis: int) -> ImageVolume:
    import nibabel as nib

    try:
        img = nib.load(str(item.path))
        raw = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel, gzip and zlib raise many types
        raise MrdistillError(f"{item.path}: not a readable NIfTI file ({type(exc).__name__})") from None
    if np.iscomplexobj(raw):
        raw = np.abs(raw)
    data = raw.astype(np.float32)
    ndim = data.ndim
    if ndim < 2:
        raise MrdistillError(f"{item.path}: a NIfTI volume needs at least 2 dimensions, got {ndim}")
    data = data[..., None] if ndim == 2 else data
    while data.ndim > 3:  # 4-D (time/volumes): the first one
        data = data[..., 0]
    if slice_axis not in (0, 1, 2):
        raise MrdistillError(f"slice axis must be 0, 1 or 2, got {slice_axis}")
    meta = {"affine": img.affine, "header": img.header, "slice_axis": slice_axis, "ndim": ndim}
    return ImageVolume(item.name, "nifti", item.path, _check_values(np.moveaxis(data, slice_axis, 0), item.path), meta)


def _read_npy(item: InputItem) -> ImageVolume:
    try:
        data = np.load(item.path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError/OSError/EOFError/...
        raise MrdistillError(f"{item.path}: not a readable .npy array ({type(exc).__name__})") from None
    if np.iscomplexobj(data):
        data = np.abs(data)
    if data.ndim not in (2, 3) or not np.issubdtype(data.dtype, np.number):
        raise MrdistillError(f"{item.path}: expected a numeric (H, W) or (S, H, W) array, got "
                             f"{data.dtype} {data.shape}")
    meta = {"ndim": data.ndim}
    return ImageVolume(item.name, "npy", item.path, _check_values(data if data.ndim == 3 else data[None], item.path), meta)


def _dicom_affine(datasets: list[Any]) -> np.ndarray:
    """4x4 RAS affine of the (row, column, slice) array, from DICOM (LPS) geometry; scaled
    identity when the geometry tags are missing."""
    first = datasets[0]
    spacing = [float(v) for v in first.get("PixelSpacing", [1.0, 1.0])]
    affine = np.diag([spacing[0], spacing[1], 1.0, 1.0])
    if "ImageOrientationPatient" not in first or "ImagePositionPatient" not in first:
        return affine
    cos = np.asarray([float(v) for v in first.ImageOrientationPatient])
    row_dir, col_dir = cos[:3], cos[3:]  # directions of increasing column / row index
    pos = np.asarray([float(v) for v in first.ImagePositionPatient])
    if len(datasets) > 1 and "ImagePositionPatient" in datasets[1]:
        step = np.asarray([float(v) for v in datasets[1].ImagePositionPatient]) - pos
    else:
        step = np.cross(row_dir, col_dir) * float(first.get("SliceThickness", 1.0))
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = col_dir * spacing[0], row_dir * spacing[1], step, pos
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS -> RAS


def _read_dicom(item: InputItem) -> ImageVolume:
    import pydicom

    datasets = []
    for f in item.files:
        try:
            ds = pydicom.dcmread(f)
            ds.pixel_array  # noqa: B018 - decode now, so a bad file is named here
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types
            raise MrdistillError(f"{f}: not a readable DICOM image ({type(exc).__name__})") from None
        datasets.append((f, ds))
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in datasets}
    if len(sizes) > 1:
        examples = {}
        for f, ds in datasets:
            examples.setdefault((int(ds.Rows), int(ds.Columns)), f.name)
        desc = ", ".join(f"{r}x{c} ({name})" for (r, c), name in sorted(examples.items()))
        raise MrdistillError(f"{item.path}: DICOM series {item.name!r} mixes image sizes: {desc}")

    def position(ds: Any) -> float:
        cos = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        return float(np.dot(np.asarray([float(v) for v in ds.ImagePositionPatient]), np.cross(cos[:3], cos[3:])))

    if all("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds for _, ds in datasets):
        datasets.sort(key=lambda fd: position(fd[1]))
    elif all("InstanceNumber" in ds for _, ds in datasets):
        datasets.sort(key=lambda fd: int(fd[1].InstanceNumber))
    slices = []
    for _, ds in datasets:
        pix = ds.pixel_array.astype(np.float32)
        pix = pix * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
        slices.extend(pix if pix.ndim == 3 else [pix])  # multi-frame files: frames are slices
    meta = {"affine": _dicom_affine([ds for _, ds in datasets]), "files": [f.name for f, _ in datasets]}
    return ImageVolume(item.name, "dicom", item.path, _check_values(np.stack(slices), item.path), meta)


def _read_image_file(path: Path) -> tuple[np.ndarray, int]:
    """One PNG/JPG as a 2-D array and its bit depth (8 or 16); colour becomes grayscale."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode.startswith("I;16") or img.mode in ("I", "F"):
                arr, bits = np.asarray(img), 16
            else:
                arr, bits = np.asarray(img.convert("L")), 8
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise MrdistillError(f"{path}: not a readable image ({type(exc).__name__})") from None
    return arr.astype(np.float32), bits


def _read_images(item: InputItem) -> ImageVolume:
    arrays, bits = [], 8
    for f in item.files:
        arr, b = _read_image_file(f)
        if arrays and arr.shape != arrays[0].shape:
            raise MrdistillError(f"{item.path}: image folder mixes sizes: {arrays[0].shape[0]}x"
                                 f"{arrays[0].shape[1]} ({item.files[0].name}) and "
                                 f"{arr.shape[0]}x{arr.shape[1]} ({f.name})")
        arrays.append(arr)
        bits = max(bits, b)
    meta = {"files": [f.name for f in item.files], "bits": bits}
    return ImageVolume(item.name, "images", item.path, _check_values(np.stack(arrays), item.path), meta)


def read_volume(item: InputItem, slice_axis: int = 2) -> ImageVolume:
    """Read one image volume (not "fastmri": those are read slice by slice by `data.fastmri`)."""
    if item.kind == "nifti":
        return _read_nifti(item, slice_axis)
    if item.kind == "npy":
        return _read_npy(item)
    if item.kind == "dicom":
        return _read_dicom(item)
    if item.kind == "images":
        return _read_images(item)
    raise MrdistillError(f"{item.path}: {item.kind} files are not image volumes")
