"""Image volumes (NIfTI, DICOM, PNG, NPY): finding, reading, writing back; `prepare` data sets."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from format_fixtures import (phantom, write_dicom_series, write_fastmri_volume, write_nifti,
                             write_png_folder)
from PIL import Image

from mrdistill.config import DataConfig, FastMRIConfig, PrepareConfig
from mrdistill.data.coils import rss
from mrdistill.data.build import make_datasets
from mrdistill.data.fastmri_io import inspect_file, read_volume_array
from mrdistill.data.prepared import prepare_volumes, read_manifest
from mrdistill.data.volume_io import write_like
from mrdistill.data.volumes import find_inputs, read_volume
from mrdistill.errors import MrdistillError
from mrdistill.physics.fft import ifft2c


def one(path):
    (item,) = find_inputs(path)
    return item


def test_nifti_read_and_write_back(tmp_path):
    path = write_nifti(tmp_path / "brain.nii.gz", shape=(24, 20, 6))
    vol = read_volume(one(path))
    raw = np.asanyarray(nib.load(str(path)).dataobj)
    assert vol.name == "brain" and vol.data.shape == (6, 24, 20) and vol.data.dtype == np.float32
    assert np.array_equal(vol.data[2], raw[:, :, 2])
    out = write_like(vol, vol.data * 0.5, tmp_path / "out")
    back = nib.load(str(out))
    assert out.name == "brain.nii.gz" and back.shape == (24, 20, 6)
    assert np.allclose(back.affine, nib.load(str(path)).affine)
    assert np.allclose(np.asanyarray(back.dataobj), raw * 0.5)
    assert read_volume(one(path), slice_axis=0).data.shape == (24, 20, 6)


def test_dicom_series_sorted_by_position(tmp_path):
    folder = write_dicom_series(tmp_path / "series", n=5, size=(20, 24))
    item = one(folder)
    assert item.kind == "dicom" and len(item.files) == 5
    vol = read_volume(item)
    expected = (phantom(5, 20, 24) * 3000).astype(np.uint16).astype(np.float32)
    assert np.array_equal(vol.data, expected)  # files were written in shuffled order
    affine = vol.meta["affine"]
    # rows run along patient y (0.8 mm), columns along x (0.7 mm), slices along z (3 mm); LPS -> RAS
    assert np.allclose(affine[:3, :3], [[0, -0.7, 0], [-0.8, 0, 0], [0, 0, 3.0]])
    out = write_like(vol, vol.data, tmp_path / "out")
    assert nib.load(str(out)).shape == (20, 24, 5)


def test_dicom_series_with_mixed_sizes_is_named(tmp_path):
    folder = write_dicom_series(tmp_path / "series", n=4, odd_size_file=2)
    with pytest.raises(MrdistillError, match=r"series.*mixes image sizes: 20x24 \(IM0000.dcm\), 22x24 \(IM0002.dcm\)"):
        read_volume(one(folder))


def test_png_folder_natural_order_and_write_back(tmp_path):
    folder = tmp_path / "pngs"
    write_png_folder(folder, n=4)
    Image.fromarray(np.full((24, 20), 7, np.uint8)).save(folder / "img10.png")
    vol = read_volume(one(folder))
    assert vol.meta["files"] == ["img1.png", "img2.png", "img3.png", "img4.png", "img10.png"]
    assert vol.data.shape == (5, 24, 20) and vol.data[-1].max() == 7
    out = write_like(vol, vol.data, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir())[:2] == ["img1.png", "img10.png"]
    assert np.array_equal(np.asarray(Image.open(out / "img2.png")), vol.data[1].astype(np.uint8))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "img5.png")
    with pytest.raises(MrdistillError, match="image folder mixes sizes"):
        read_volume(one(folder))


def test_npy_and_bad_values(tmp_path):
    np.save(tmp_path / "slice.npy", np.ones((8, 9)))
    vol = read_volume(one(tmp_path / "slice.npy"))
    assert vol.data.shape == (1, 8, 9)
    assert write_like(vol, vol.data, tmp_path / "o").name == "slice.npy"
    assert np.load(tmp_path / "o" / "slice.npy").shape == (8, 9)
    np.save(tmp_path / "nan.npy", np.full((2, 8, 8), np.nan))
    with pytest.raises(MrdistillError, match="nan.npy: contains NaN or Inf"):
        read_volume(one(tmp_path / "nan.npy"))
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    with pytest.raises(MrdistillError, match="broken.nii.gz: not a readable NIfTI file"):
        read_volume(one(tmp_path / "broken.nii.gz"))


def test_find_inputs_in_a_mixed_tree(tmp_path):
    write_fastmri_volume(tmp_path / "file1.h5", slices=1)
    write_nifti(tmp_path / "vol.nii.gz")
    write_png_folder(tmp_path / "pngs", n=2)
    write_dicom_series(tmp_path / "dcm" / "s1", n=2)
    kinds = {(i.kind, i.name) for i in find_inputs(tmp_path)}
    assert kinds == {("fastmri", "file1"), ("nifti", "vol"), ("images", "pngs"), ("dicom", "dcm_s1")}
    (tmp_path / "empty").mkdir()
    with pytest.raises(MrdistillError, match="empty folder or no supported files"):
        find_inputs(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MrdistillError, match="unsupported file type"):
        find_inputs(tmp_path / "notes.txt")


def test_prepare_single_coil_real(tmp_path):
    items = find_inputs(write_nifti(tmp_path / "in" / "a.nii.gz", shape=(24, 24, 12)))
    cfg = PrepareConfig(slab=2, split_fractions=[0.5, 0.25, 0.25])
    result = prepare_volumes(items, tmp_path / "prep", cfg, progress=False)
    manifest = read_manifest(tmp_path / "prep")
    assert manifest == result.manifest and manifest["mode"] == "real" and manifest["options"]["slab"] == 2
    assert sum(v["slices"] for v in manifest["splits"].values()) == manifest["inputs"][0]["slices_kept"]
    first = manifest["files"]["train"][0]
    info = inspect_file(tmp_path / "prep" / first["file"])
    assert info.coils == 0 and "reconstruction_esc" in info.targets and info.encoding.padding_left == 0
    k = torch.from_numpy(read_volume_array(info.path, "kspace"))
    target = read_volume_array(info.path, "reconstruction_esc")
    assert np.allclose(ifft2c(k).real.numpy(), target, atol=1e-5) and target.max() <= 1.0
    assert json.loads((tmp_path / "prep" / "prepare.json").read_text())["format"] == "mrdistill.prepared/1"
    sets = make_datasets(DataConfig(dataset="prepared", path=str(tmp_path / "prep"),
                                    fastmri=FastMRIConfig(cache_dir="")))
    assert len(sets["train"]) + len(sets["val"]) + len(sets["test"]) == manifest["inputs"][0]["slices_kept"]
    assert sets["train"][0].zero_filled.shape == (1, 24, 24)


def test_prepare_multicoil_complex_with_noise(tmp_path):
    items = find_inputs(write_nifti(tmp_path / "in" / "a.nii.gz", shape=(24, 24, 4)))
    cfg = PrepareConfig(mode="complex", coils=4, noise_std=0.01, split_by="volume", seed=3)
    prepare_volumes(items, tmp_path / "prep", cfg, progress=False)
    (train_file,) = (tmp_path / "prep" / "train").iterdir()
    k = torch.from_numpy(read_volume_array(train_file, "kspace"))
    target = read_volume_array(train_file, "reconstruction_rss")
    assert k.shape[:2] == (4, 4)
    diff = rss(ifft2c(k), dim=1).numpy() - target
    assert 0.002 < np.abs(diff).mean() < 0.05  # noisy k-space, noise-free RSS target
    cfg = DataConfig(dataset="prepared", path=str(tmp_path / "prep"), fastmri=FastMRIConfig(cache_dir=""))
    with pytest.raises(MrdistillError, match="data.mode: complex"):
        make_datasets(cfg)
    with pytest.raises(MrdistillError, match="--coils > 1 needs --mode complex"):
        prepare_volumes(items, tmp_path / "p2", PrepareConfig(coils=2), progress=False)


def test_prepare_refuses_fastmri_and_existing_output(tmp_path):
    h5 = find_inputs(write_fastmri_volume(tmp_path / "x.h5", slices=1))
    with pytest.raises(MrdistillError, match="already holds k-space"):
        prepare_volumes(h5, tmp_path / "p", PrepareConfig(), progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    nii = find_inputs(write_nifti(tmp_path / "a.nii.gz"))
    with pytest.raises(MrdistillError, match="already holds results; pass --overwrite"):
        prepare_volumes(nii, tmp_path / "full", PrepareConfig(), progress=False)
    with pytest.raises(MrdistillError, match="no prepare.json"):
        read_manifest(tmp_path / "full")


def test_nifti_with_values_beyond_dimension_4_is_refused(tmp_path):
    """A 5-D NIfTI (e.g. vector components) would lose dimension 5: refused, naming the file;
    size-1 dimensions 5+ drop nothing and read as the 3-D volume."""
    data = np.arange(8 * 6 * 3 * 2, dtype=np.float32).reshape(8, 6, 3, 1, 2) + 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "vec.nii"))
    with pytest.raises(MrdistillError, match=r"vec.nii: a 5-D NIfTI of shape \(8, 6, 3, 1, 2\)"):
        read_volume(one(tmp_path / "vec.nii"))
    nib.save(nib.Nifti1Image(data[..., :1], np.eye(4)), str(tmp_path / "one.nii"))
    vol = read_volume(one(tmp_path / "one.nii"))
    assert vol.data.shape == (3, 8, 6) and np.array_equal(vol.data[1], data[:, :, 1, 0, 0])
