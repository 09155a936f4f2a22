"""Reader-level bad inputs: each is refused with one line naming the file, never hangs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import write_dicom_series, write_fastmri_volume, write_png_folder  # noqa: E402

from mrdistill.config import DataConfig, FastMRIConfig  # noqa: E402
from mrdistill.data.fastmri import FastMRISliceDataset  # noqa: E402
from mrdistill.data.fastmri_index import index_folder  # noqa: E402
from mrdistill.data.fastmri_io import inspect_file, inspect_files  # noqa: E402
from mrdistill.data.volumes import find_inputs, read_volume  # noqa: E402
from mrdistill.errors import MrdistillError  # noqa: E402
from mrdistill.timelimit import TimeLimitExceeded  # noqa: E402
from mrdistill.train.file_evaluation import evaluate_prediction_files  # noqa: E402


def busy_hdf5_file(path: Path) -> Path:
    """A 13 KB fastMRI file with one inserted byte inside its global heap (the string attributes):
    reading its attributes keeps HDF5 busy for minutes (found by fuzzing)."""
    clean = write_fastmri_volume(path.with_name("clean.h5"), slices=2, height=16, width=12, recon=(8, 8))
    raw = clean.read_bytes()
    heap = raw.index(b"GCOL", raw.index(b"GCOL") + 4) if raw.count(b"GCOL") > 1 else raw.index(b"GCOL")
    pos = raw.index(b"CORPD_FBK", heap)  # the 'acquisition' attribute's characters
    path.write_bytes(raw[:pos] + b"\x01" + raw[pos:])
    clean.unlink()
    return path


def test_a_file_that_keeps_hdf5_busy_is_unreadable_after_the_time_limit(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    busy = busy_hdf5_file(folder / "busy.h5")
    write_fastmri_volume(folder / "good.h5", slices=2, height=16, width=12, recon=(8, 8))
    start = time.perf_counter()
    (result,) = list(inspect_files([busy], time_limit=1.0))
    assert isinstance(result, TimeLimitExceeded) and str(busy) in str(result)
    assert time.perf_counter() - start < 10
    with pytest.raises(MrdistillError, match="busy.h5: reading it took more than 1 s"):
        index_folder(folder, "", time_limit=1.0)
    index = index_folder(folder, "", skip_bad=True, time_limit=1.0)  # --skip-bad / fastmri.skip_bad
    assert [v.name for v in index.volumes] == ["good"] and index.bad[0][0] == str(busy)


def test_kspace_of_width_zero_is_refused(tmp_path):
    path = tmp_path / "w0.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 16, 0), dtype=np.complex64))
    with pytest.raises(MrdistillError, match=r"w0.h5: 'kspace' must be .* no empty axis"):
        inspect_file(path)


def test_an_all_zero_fastmri_file_is_refused_no_signal(tmp_path):
    path = write_fastmri_volume(tmp_path / "zero.h5", slices=2, height=16, width=12, recon=(8, 8))
    with h5py.File(path, "r+") as f:
        f["kspace"][...] = 0
        f["reconstruction_esc"][...] = 0
        f.attrs["max"] = 0.0
    with pytest.raises(MrdistillError, match="zero.h5: no signal"):
        inspect_file(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["max"]  # without the attribute, the first slice read refuses it
    ds = FastMRISliceDataset([inspect_file(path)], DataConfig(mode="complex", fastmri=FastMRIConfig()), "val")
    with pytest.raises(MrdistillError, match="zero.h5: k-space slice 0 is all zero"):
        ds[0]


def test_a_non_numeric_max_attribute_is_refused(tmp_path):
    path = write_fastmri_volume(tmp_path / "m.h5", slices=2, height=16, width=12, recon=(8, 8))
    with h5py.File(path, "r+") as f:
        f.attrs["max"] = "big"
    with pytest.raises(MrdistillError, match="m.h5: attribute 'max' must be a finite number"):
        inspect_file(path)


@pytest.mark.parametrize("tag, value, problem", [
    ("ImagePositionPatient", ["a", "b", "c"], "ImagePositionPatient is not numeric"),
    ("ImagePositionPatient", [1.0, 2.0], "ImagePositionPatient must hold 3"),
    ("ImageOrientationPatient", [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], "ImageOrientationPatient holds parallel or zero directions"),
    ("RescaleSlope", "x", "RescaleSlope is not numeric"),
    ("PixelSpacing", [float("nan"), 1.0], "PixelSpacing must hold 2 finite"),
])
def test_bad_dicom_geometry_and_rescale_tags_are_named(tmp_path, tag, value, problem):
    import pydicom

    folder = write_dicom_series(tmp_path / "dcm", n=2, size=(10, 8))
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    numeric = all(isinstance(v, float) for v in (value if isinstance(value, list) else [value]))
    if tag in ds:
        del ds[tag]
    ds.add_new(tag, "DS" if numeric else "LO", value if numeric else "\\".join(map(str, value)))
    ds.save_as(first)
    with pytest.raises(MrdistillError, match=f"{first.name}: DICOM tag {problem}"):
        read_volume(find_inputs(folder)[0])


def test_a_png_that_pillow_cannot_parse_names_the_file_in_words(tmp_path):
    folder = write_png_folder(tmp_path / "png", n=2, size=(10, 8))
    bad = sorted(folder.iterdir())[0]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # Pillow raises SyntaxError on this
    with pytest.raises(MrdistillError, match=f"{bad.name}: not a readable image \\(\\w+"):
        read_volume(find_inputs(folder)[0])


def test_a_decompression_bomb_is_refused(tmp_path, monkeypatch):
    from PIL import Image

    folder = write_png_folder(tmp_path / "png", n=1, size=(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels is then a "bomb"
    with pytest.raises(MrdistillError, match="not a readable image .*decompression bomb"):
        read_volume(find_inputs(folder)[0])


def test_a_nifti_header_promising_more_data_than_the_file_holds_is_refused_before_allocating(tmp_path):
    import nibabel as nib

    path = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), dtype=np.float32), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[42:44] = (30000).to_bytes(2, "little")  # dim[1] = 30000 (header bytes 42-43)
    raw[44:46] = (30000).to_bytes(2, "little")  # dim[2]: 3.6 GB of float32 promised
    path.write_bytes(bytes(raw))
    with pytest.raises(MrdistillError, match="big.nii: the NIfTI header promises .* bytes"):
        read_volume(find_inputs(path)[0])


def _prediction_of(target: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    with h5py.File(target, "r") as f, h5py.File(folder / target.name, "w") as g:
        g["reconstruction"] = f["reconstruction_esc"][()]
    return folder / target.name


def test_evaluate_reads_target_and_prediction_headers_under_the_time_limit(tmp_path):
    targets = tmp_path / "targets"
    good = write_fastmri_volume(targets / "good.h5", slices=2, height=16, width=12, recon=(8, 8))
    _prediction_of(good, tmp_path / "pred")
    busy = busy_hdf5_file(targets / "busy.h5")
    start = time.perf_counter()
    with pytest.raises(MrdistillError, match="busy.h5: reading it took more than 1 s"):
        evaluate_prediction_files(targets, tmp_path / "pred", metrics=("psnr",), time_limit=1.0)
    ev = evaluate_prediction_files(targets, tmp_path / "pred", metrics=("psnr",), time_limit=1.0,
                                   skip_bad=True)  # --skip-bad
    assert [row["volume"] for row in ev.per_volume] == ["good"] and ev.per_volume[0]["psnr"] == np.inf
    assert ev.skipped[0][0] == str(busy) and "more than 1 s" in ev.skipped[0][1]
    # a prediction that keeps HDF5 busy is refused (never skipped: it is the thing being scored)
    busy.unlink()
    busy_prediction = busy_hdf5_file(tmp_path / "pred" / "good.h5")
    with pytest.raises(MrdistillError, match=f"{busy_prediction}: reading it took more than 1 s"):
        evaluate_prediction_files(targets, tmp_path / "pred", metrics=("psnr",), time_limit=1.0,
                                  skip_bad=True)
    assert time.perf_counter() - start < 30
