"""fastMRI HDF5 files: checking and describing one file, the ismrmrd header, and writing files.

Layout (REFERENCE.md section 5): `kspace` complex64, single-coil `(slices, H, W)` or multi-coil
`(slices, coils, H, W)`; targets float32 `(slices, h, w)` named `reconstruction_esc` (single-coil)
or `reconstruction_rss` (multi-coil); `ismrmrd_header` XML; attributes `max`, `norm`,
`acquisition`, `patient_id`; test files also hold a 1-D `mask` (W,) and `acceleration`.
Prediction files hold one dataset `reconstruction` float32 `(slices, H, W)`.

Every problem with a file raises `MrdistillError` with one line that names the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrdistill.atomic import atomic_path
from mrdistill.config import FastMRIConfig
from mrdistill.errors import MrdistillError, describe_exception
from mrdistill.timelimit import iter_time_limited

TARGET_KEYS = {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}
PREDICTION_KEY = "reconstruction"
_ATTR_KEYS = ("max", "norm", "acquisition", "patient_id", "acceleration", "num_low_frequency")


@dataclass(frozen=True)
class EncodingInfo:
    """What the ismrmrd header says: encoded and recon matrix sizes (x = readout = H, y = phase
    encode = W) and the columns [padding_left, padding_right) of W that hold acquired lines; the
    columns outside are zero padding and never count as sampled."""

    encoded_size: tuple[int, int]
    recon_size: tuple[int, int]
    padding_left: int
    padding_right: int


@dataclass(frozen=True)
class VolumeInfo:
    """The metadata of one fastMRI file (what the metadata cache stores; no image data)."""

    path: str
    name: str
    num_slices: int
    coils: int  # 0 for single-coil k-space (slices, H, W)
    height: int
    width: int
    targets: dict[str, tuple[int, int]]  # target key -> (h, w) of its slices
    has_mask: bool  # a stored acquisition mask: the k-space is already undersampled
    encoding: EncodingInfo
    attrs: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> VolumeInfo:
        enc = data["encoding"]
        encoding = EncodingInfo(tuple(enc["encoded_size"]), tuple(enc["recon_size"]),  # type: ignore[arg-type]
                                int(enc["padding_left"]), int(enc["padding_right"]))
        targets = {k: (int(v[0]), int(v[1])) for k, v in data["targets"].items()}
        return VolumeInfo(data["path"], data["name"], int(data["num_slices"]), int(data["coils"]),
                          int(data["height"]), int(data["width"]), targets, bool(data["has_mask"]),
                          encoding, dict(data["attrs"]))


# ---------------------------------------------------------------- ismrmrd header


def _child(node: ET.Element, name: str) -> ET.Element:
    """The first child whose tag (namespace stripped) is `name`."""
    for child in node:
        if child.tag.rsplit("}", 1)[-1] == name:
            return child
    raise KeyError(name)


def _int_at(root: ET.Element, path: tuple[str, ...]) -> int:
    node = root
    for name in path:
        node = _child(node, name)
    return int(float((node.text or "").strip()))


def parse_ismrmrd_header(xml: bytes | str) -> EncodingInfo:
    """Encoded/recon size and phase-encode padding from an ismrmrd XML header (first encoding).

    fastMRI's convention: padding_left = encoded_y // 2 - center of kspace_encoding_step_1,
    padding_right = padding_left + maximum + 1. Raises `ValueError`/`KeyError` on a malformed header.
    """
    root = ET.fromstring(xml)
    enc = ("encoding", "encodedSpace", "matrixSize")
    rec = ("encoding", "reconSpace", "matrixSize")
    lim = ("encoding", "encodingLimits", "kspace_encoding_step_1")
    encoded = (_int_at(root, enc + ("x",)), _int_at(root, enc + ("y",)))
    recon = (_int_at(root, rec + ("x",)), _int_at(root, rec + ("y",)))
    left = encoded[1] // 2 - _int_at(root, lim + ("center",))
    right = left + _int_at(root, lim + ("maximum",)) + 1
    return EncodingInfo(encoded, recon, left, right)


def ismrmrd_header_xml(encoded: tuple[int, int], recon: tuple[int, int],
                       pe_center: int | None = None, pe_maximum: int | None = None,
                       fov_mm: tuple[float, float, float] | None = None) -> str:
    """A minimal ismrmrd XML header with the fields fastMRI readers use.

    encoded/recon: (x, y) = (H, W) matrix sizes; the phase-encode limits default to a full,
    unpadded acquisition (center y // 2, maximum y - 1); fov_mm: the (x, y, z = slice thickness)
    field of view of both spaces in mm, where it is known (fastMRI readers do not need it).
    """
    center = encoded[1] // 2 if pe_center is None else pe_center
    maximum = encoded[1] - 1 if pe_maximum is None else pe_maximum
    fov = "" if fov_mm is None else ("<fieldOfView_mm>" + "".join(
        f"<{a}>{v:g}</{a}>" for a, v in zip("xyz", fov_mm)) + "</fieldOfView_mm>")

    def size(x: int, y: int) -> str:
        return f"<matrixSize><x>{x}</x><y>{y}</y><z>1</z></matrixSize>{fov}"

    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
            f"<encodedSpace>{size(*encoded)}</encodedSpace><reconSpace>{size(*recon)}</reconSpace>"
            "<encodingLimits><kspace_encoding_step_1>"
            f"<minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center>"
            "</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>")


# ---------------------------------------------------------------- reading


@contextmanager
def open_h5(path: str | Path) -> Iterator[h5py.File]:
    """`h5py.File(path, "r")`; a missing, truncated or non-HDF5 file raises `MrdistillError`."""
    path = Path(path)
    if not path.is_file():
        raise MrdistillError(f"{path}: file not found")
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - OSError mostly; damaged files also raise others
        text = str(exc).lower()
        if "truncated" in text:
            why = "truncated HDF5 file (incomplete download or copy?)"
        elif "signature" in text:
            why = "not an HDF5 file"
        else:
            why = f"cannot open as HDF5 ({describe_exception(exc)})"
        raise MrdistillError(f"{path}: {why}") from None
    try:
        yield handle
    finally:
        handle.close()


def _plain(value: Any) -> Any:
    """An HDF5 attribute as a JSON-friendly Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _number_attr(path: Path, key: str, value: Any) -> Any:
    """`max`/`norm`/`acceleration` must be finite numbers (they scale data); others pass."""
    if key in ("max", "norm", "acceleration"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise MrdistillError(f"{path}: attribute '{key}' must be a finite number, got {value!r}")
    return value


def _describe(path: Path, f: h5py.File) -> VolumeInfo:
    """The body of `inspect_file` on an open file (HDF5 errors are turned into words by the caller)."""
    if "kspace" not in f:
        raise MrdistillError(f"{path}: no 'kspace' dataset (has: {', '.join(sorted(f.keys())) or 'nothing'})")
    ks = f["kspace"]
    if not isinstance(ks, h5py.Dataset) or not np.issubdtype(ks.dtype, np.complexfloating):
        raise MrdistillError(f"{path}: 'kspace' must be a complex dataset, got {getattr(ks, 'dtype', 'a group')}")
    if ks.ndim not in (3, 4) or min(ks.shape) == 0:
        raise MrdistillError(f"{path}: 'kspace' must be (slices, H, W) or (slices, coils, H, W) with "
                             f"no empty axis, got shape {ks.shape}")
    slices, height, width = ks.shape[0], ks.shape[-2], ks.shape[-1]
    coils = ks.shape[1] if ks.ndim == 4 else 0
    targets = {}
    for key in TARGET_KEYS.values():
        if key in f:
            shape = getattr(f[key], "shape", None)
            if shape is None or len(shape) != 3 or shape[0] != slices or min(shape) == 0:
                raise MrdistillError(f"{path}: '{key}' must be ({slices}, h, w), got {shape or 'a group'}")
            targets[key] = (int(shape[1]), int(shape[2]))
    has_mask = "mask" in f
    if has_mask and getattr(f["mask"], "shape", None) != (width,):
        raise MrdistillError(f"{path}: 'mask' must have shape ({width},), got {getattr(f['mask'], 'shape', 'a group')}")
    if "ismrmrd_header" in f:
        try:
            encoding = parse_ismrmrd_header(f["ismrmrd_header"][()])
        except (ET.ParseError, KeyError, ValueError, TypeError, OverflowError) as exc:
            raise MrdistillError(f"{path}: unreadable ismrmrd_header ({describe_exception(exc)})") from None
        if min(encoding.encoded_size + encoding.recon_size) < 1:
            raise MrdistillError(f"{path}: ismrmrd_header gives a matrix size below 1: "
                                 f"encoded {encoding.encoded_size}, recon {encoding.recon_size}")
    else:  # no header: recon size from the target (or k-space), no padding
        recon = next(iter(targets.values()), (height, width))
        encoding = EncodingInfo((height, width), recon, 0, width)
    attrs = {k: _number_attr(path, k, _plain(f.attrs[k])) for k in _ATTR_KEYS if k in f.attrs}
    if targets and attrs.get("max") == 0:
        raise MrdistillError(f"{path}: no signal (its 'max' attribute is 0: an all-zero volume)")
    return VolumeInfo(str(path), path.name[:-3] if path.name.endswith(".h5") else path.stem,
                      int(slices), int(coils), int(height), int(width), targets, has_mask,
                      encoding, attrs)


def inspect_file(path: str | Path) -> VolumeInfo:
    """Check one fastMRI file and describe it (shapes, targets, header, attributes).

    Reads metadata only (no k-space values). Problems raise `MrdistillError` naming the file. No
    time limit: for files from users use `inspect_files`, which runs this in a worker process.
    """
    path = Path(path)
    with open_h5(path) as f:
        try:
            return _describe(path, f)
        except MrdistillError:
            raise
        except Exception as exc:  # noqa: BLE001 - HDF5 raises OSError/KeyError/RuntimeError/... on damage
            raise MrdistillError(f"{path}: damaged HDF5 file ({describe_exception(exc)})") from None


def _inspect_json(path: str) -> dict[str, Any]:
    return inspect_file(path).to_json()


def inspect_files(paths: Sequence[str | Path], time_limit: float = FastMRIConfig.metadata_time_limit
                  ) -> Iterator[VolumeInfo | MrdistillError]:
    """`inspect_file` of each path (in order, as each is ready) in a worker process, at most
    `time_limit` seconds per file; a bad file or one over the limit gives its `MrdistillError`."""
    if not (time_limit > 0 and np.isfinite(time_limit)):
        raise MrdistillError(f"fastmri.metadata_time_limit must be a positive number of seconds, got {time_limit}")
    for result in iter_time_limited(_inspect_json, [str(p) for p in paths], time_limit):
        yield result if isinstance(result, MrdistillError) else VolumeInfo.from_json(result)


def _datasets_and_attrs(path: str) -> dict[str, Any]:
    """{"datasets": {name: rank}, "attrs": the plain attributes fastMRI files carry} of one file."""
    with open_h5(path) as f:
        try:
            return {"datasets": {k: int(getattr(f[k], "ndim", -1)) for k in f.keys()},
                    "attrs": {k: _plain(f.attrs[k]) for k in _ATTR_KEYS if k in f.attrs}}
        except Exception as exc:  # noqa: BLE001 - HDF5 raises many types on damaged files
            raise MrdistillError(f"{path}: damaged HDF5 file ({describe_exception(exc)})") from None


def read_headers(paths: Sequence[str | Path], time_limit: float = FastMRIConfig.metadata_time_limit
                 ) -> Iterator[dict[str, Any] | MrdistillError]:
    """Dataset ranks and attributes of each file (any HDF5 file, e.g. targets without k-space),
    at most `time_limit` seconds per file in a worker process, as `inspect_files` does."""
    yield from iter_time_limited(_datasets_and_attrs, [str(p) for p in paths], time_limit)


def inspect_file_limited(path: str | Path, time_limit: float = FastMRIConfig.metadata_time_limit) -> VolumeInfo:
    """`inspect_file` under a time limit (see `inspect_files`); raises its `MrdistillError`."""
    (result,) = list(inspect_files([path], time_limit))
    if isinstance(result, MrdistillError):
        raise result
    return result


def read_volume_array(path: str | Path, key: str) -> np.ndarray:
    """A whole dataset (e.g. a target or a prediction volume) as a numpy array; clear errors."""
    with open_h5(path) as f:
        try:
            if key not in f:
                raise MrdistillError(f"{path}: no '{key}' dataset (has: {', '.join(sorted(f.keys()))})")
            return np.asarray(f[key][()])
        except MrdistillError:
            raise
        except Exception as exc:  # noqa: BLE001 - HDF5 raises many types on damaged files
            raise MrdistillError(f"{path}: cannot read '{key}' ({describe_exception(exc)})") from None


# ---------------------------------------------------------------- writing


@contextmanager
def _atomic_h5(path: Path) -> Iterator[h5py.File]:
    """An HDF5 file written to a temporary name in the same folder and renamed on success."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def write_fastmri_file(path: str | Path, kspace: np.ndarray, *, target: np.ndarray | None = None,
                       target_key: str | None = None, header_xml: str | None = None,
                       mask: np.ndarray | None = None, attrs: Mapping[str, Any] | None = None) -> None:
    """Write one volume in the fastMRI layout (atomically).

    kspace: complex (S, H, W) or (S, C, H, W), stored complex64; target: float (S, h, w) stored
    float32 under `target_key` (default by coil count); header_xml: ismrmrd header (default: a
    full, unpadded acquisition with recon size = target size); mask: stored 1-D (W,) mask for
    test-style files; attrs: HDF5 attributes (`max` and `norm` default from the target).
    """
    path = Path(path)
    kspace = np.asarray(kspace)
    h, w = kspace.shape[-2:]
    recon = (h, w) if target is None else target.shape[-2:]
    key = target_key or TARGET_KEYS["multicoil" if kspace.ndim == 4 else "singlecoil"]
    all_attrs: dict[str, Any] = {}
    if target is not None:
        all_attrs.update(max=float(np.max(target)), norm=float(np.linalg.norm(target)))
    all_attrs.update(attrs or {})
    with _atomic_h5(path) as f:
        f.create_dataset("kspace", data=kspace.astype(np.complex64))
        if target is not None:
            f.create_dataset(key, data=np.asarray(target, dtype=np.float32))
        if mask is not None:
            f.create_dataset("mask", data=np.asarray(mask, dtype=bool))
        f.create_dataset("ismrmrd_header", data=header_xml or ismrmrd_header_xml((h, w), tuple(recon)))
        for k, v in all_attrs.items():
            f.attrs[k] = v


def write_reconstruction(path: str | Path, reconstruction: np.ndarray,
                         attrs: Mapping[str, Any] | None = None) -> None:
    """Write a prediction file: dataset `reconstruction` float32 (S, H, W), the layout fastMRI's
    evaluation reads; `attrs` (provenance) go into the file's attributes."""
    recon = np.asarray(reconstruction, dtype=np.float32)
    if recon.ndim != 3:
        raise MrdistillError(f"{path}: a reconstruction must be (slices, H, W), got {recon.shape}")
    with _atomic_h5(Path(path)) as f:
        f.create_dataset(PREDICTION_KEY, data=recon)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
