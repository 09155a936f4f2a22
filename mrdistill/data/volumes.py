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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrdistill.errors import MrdistillError, describe_exception

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
    if not data.max() > 0:  # volumes are scaled by their max
        raise MrdistillError(f"{where}: no positive intensity (max {float(data.max()):g})")
    return np.ascontiguousarray(data, dtype=np.float32)


# gzip cannot compress by more than about 1032:1, so a .nii.gz header that promises more data
# than this many times the file size is damaged: refuse it before allocating.
_MAX_GZIP_RATIO = 1100


def _nifti_size_check(path: Path, img: Any) -> None:
    """Refuse a header whose data size cannot be in the file (before any allocation)."""
    shape = [int(n) for n in img.header.get_data_shape()]
    if not shape or min(shape) < 1:
        raise MrdistillError(f"{path}: the NIfTI header gives an empty data shape {tuple(shape)}")
    need = int(np.prod(shape, dtype=object)) * np.dtype(img.get_data_dtype()).itemsize
    size = path.stat().st_size
    if path.name.lower().endswith(".gz"):
        if need > _MAX_GZIP_RATIO * size:
            raise MrdistillError(f"{path}: the NIfTI header promises {need} bytes of data, more than "
                                 f"a {size}-byte compressed file can hold (damaged header)")
    elif need + int(img.header.get("vox_offset", 0)) > size:
        raise MrdistillError(f"{path}: the NIfTI header promises {need} bytes of data but the file "
                             f"holds {size} bytes (truncated or damaged)")


def _read_nifti(item: InputItem, slice_axis: int) -> ImageVolume:
    import nibabel as nib

    if slice_axis not in (0, 1, 2):
        raise MrdistillError(f"slice axis must be 0, 1 or 2, got {slice_axis}")
    try:
        img = nib.load(str(item.path))
        _nifti_size_check(item.path, img)
        raw = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=float)
    except MrdistillError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel, gzip and zlib raise many types
        raise MrdistillError(f"{item.path}: not a readable NIfTI file ({describe_exception(exc)})") from None
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise MrdistillError(f"{item.path}: the NIfTI header's affine is not a finite 4x4 matrix")
    if np.iscomplexobj(raw):
        raw = np.abs(raw)
    if not np.issubdtype(raw.dtype, np.number):
        raise MrdistillError(f"{item.path}: NIfTI data of type {raw.dtype} are not image intensities")
    data = raw.astype(np.float32)
    ndim = data.ndim
    if ndim < 2:
        raise MrdistillError(f"{item.path}: a NIfTI volume needs at least 2 dimensions, got {ndim}")
    if any(n > 1 for n in data.shape[4:]):  # dimensions 5+ (e.g. vector/tensor components)
        raise MrdistillError(f"{item.path}: a {ndim}-D NIfTI of shape {data.shape} holds more than one "
                             f"value along dimension 5 or later, which mrdistill would drop (it reads "
                             f"3-D volumes, and the first volume of a 4-D series); split the file first")
    data = data[..., None] if ndim == 2 else data
    while data.ndim > 3:  # 4-D (time/volumes): the first one; size-1 dimensions 5+ drop nothing
        data = data[..., 0]
    meta = {"affine": affine, "header": img.header, "slice_axis": slice_axis, "ndim": ndim}
    return ImageVolume(item.name, "nifti", item.path, _check_values(np.moveaxis(data, slice_axis, 0), item.path), meta)


def _read_npy(item: InputItem) -> ImageVolume:
    try:
        data = np.load(item.path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError/OSError/EOFError/...
        raise MrdistillError(f"{item.path}: not a readable .npy array ({describe_exception(exc)})") from None
    if not isinstance(data, np.ndarray):
        raise MrdistillError(f"{item.path}: not a .npy array file (an .npz archive?)")
    if np.iscomplexobj(data):
        data = np.abs(data)
    if data.ndim not in (2, 3) or not np.issubdtype(data.dtype, np.number) or min(data.shape) == 0:
        raise MrdistillError(f"{item.path}: expected a numeric (H, W) or (S, H, W) array, got "
                             f"{data.dtype} {data.shape}")
    meta = {"ndim": data.ndim}
    return ImageVolume(item.name, "npy", item.path, _check_values(data if data.ndim == 3 else data[None], item.path), meta)


@dataclass
class _DicomFile:
    """What one DICOM file contributes, its numbers already checked."""

    path: Path
    frames: list[np.ndarray]  # float32 (rows, columns) each, rescaled
    spacing: list[float]  # PixelSpacing (row, column) in mm
    orientation: list[float] | None  # ImageOrientationPatient: row then column direction cosines
    position: list[float] | None  # ImagePositionPatient (LPS, mm)
    thickness: float
    instance: int | None


def _dicom_numbers(ds: Any, tag: str, count: int, path: Path) -> list[float] | None:
    """A numeric tag as `count` finite floats; None when absent; malformed -> `MrdistillError`."""
    if tag not in ds:
        return None
    try:
        raw = ds[tag].value
        values = [float(raw)] if isinstance(raw, (str, bytes, int, float)) else [float(v) for v in raw]
    except Exception as exc:  # noqa: BLE001 - pydicom values can be anything in a damaged file
        raise MrdistillError(f"{path}: DICOM tag {tag} is not numeric ({describe_exception(exc)})") from None
    if len(values) != count or not np.isfinite(values).all():
        raise MrdistillError(f"{path}: DICOM tag {tag} must hold {count} finite number(s), got {values}")
    return values


def _read_dicom_file(path: Path) -> _DicomFile:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        pix = np.asarray(ds.pixel_array)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types
        raise MrdistillError(f"{path}: not a readable DICOM image ({describe_exception(exc)})") from None
    if samples != 1 or pix.ndim not in (2, 3) or min(pix.shape) == 0 or not np.issubdtype(pix.dtype, np.number):
        raise MrdistillError(f"{path}: expected a grayscale DICOM image, got {samples} sample(s) per "
                             f"pixel and pixel data {pix.dtype} {pix.shape}")
    slope = (_dicom_numbers(ds, "RescaleSlope", 1, path) or [1.0])[0]
    intercept = (_dicom_numbers(ds, "RescaleIntercept", 1, path) or [0.0])[0]
    pix = pix.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    orientation = _dicom_numbers(ds, "ImageOrientationPatient", 6, path)
    if orientation is not None and not np.linalg.norm(np.cross(orientation[:3], orientation[3:])) > 1e-3:
        raise MrdistillError(f"{path}: DICOM tag ImageOrientationPatient holds parallel or zero "
                             f"directions {orientation}")
    instance = _dicom_numbers(ds, "InstanceNumber", 1, path)
    return _DicomFile(path, list(pix) if pix.ndim == 3 else [pix],  # multi-frame: frames are slices
                      _dicom_numbers(ds, "PixelSpacing", 2, path) or [1.0, 1.0], orientation,
                      _dicom_numbers(ds, "ImagePositionPatient", 3, path),
                      (_dicom_numbers(ds, "SliceThickness", 1, path) or [1.0])[0],
                      None if instance is None else int(instance[0]))


def _dicom_affine(files: list[_DicomFile]) -> np.ndarray:
    """4x4 RAS affine of the (row, column, slice) array, from DICOM (LPS) geometry; scaled
    identity when the geometry tags are missing."""
    first = files[0]
    spacing = first.spacing
    affine = np.diag([spacing[0], spacing[1], 1.0, 1.0])
    if first.orientation is None or first.position is None:
        return affine
    cos = np.asarray(first.orientation)
    row_dir, col_dir = cos[:3], cos[3:]  # directions of increasing column / row index
    pos = np.asarray(first.position)
    if len(files) > 1 and files[1].position is not None:
        step = np.asarray(files[1].position) - pos
    else:
        step = np.cross(row_dir, col_dir) * first.thickness
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = col_dir * spacing[0], row_dir * spacing[1], step, pos
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS -> RAS


def _read_dicom(item: InputItem) -> ImageVolume:
    files = [_read_dicom_file(f) for f in item.files]
    sizes = {}
    for d in files:
        sizes.setdefault(d.frames[0].shape, d.path.name)
    if len(sizes) > 1:
        desc = ", ".join(f"{r}x{c} ({name})" for (r, c), name in sorted(sizes.items()))
        raise MrdistillError(f"{item.path}: DICOM series {item.name!r} mixes image sizes: {desc}")

    def position(d: _DicomFile) -> float:
        cos = np.asarray(d.orientation)
        return float(np.dot(np.asarray(d.position), np.cross(cos[:3], cos[3:])))

    if all(d.position is not None and d.orientation is not None for d in files):
        files.sort(key=position)
    elif all(d.instance is not None for d in files):
        files.sort(key=lambda d: d.instance)
    slices = [frame for d in files for frame in d.frames]
    meta = {"affine": _dicom_affine(files), "files": [d.path.name for d in files]}
    return ImageVolume(item.name, "dicom", item.path, _check_values(np.stack(slices), item.path), meta)


def _read_image_file(path: Path) -> tuple[np.ndarray, int]:
    """One PNG/JPG as a 2-D array and its bit depth (8 or 16); colour becomes grayscale."""
    from PIL import Image

    try:
        with warnings.catch_warnings(), Image.open(path) as img:
            # a huge image is refused, not just warned about: it would be held as float32
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            if img.mode.startswith("I;16") or img.mode in ("I", "F"):
                arr, bits = np.asarray(img), 16
            else:
                arr, bits = np.asarray(img.convert("L")), 8
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, DecompressionBombError, ...
        raise MrdistillError(f"{path}: not a readable image ({describe_exception(exc)})") from None
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise MrdistillError(f"{path}: expected a 2-D image, got shape {arr.shape}")
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
