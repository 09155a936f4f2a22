"""fastMRI HDF5: header, metadata cache, lazy slice reads, masks, targets, coils, bad files."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from format_fixtures import write_fastmri_folder, write_fastmri_volume

from mrdistill.config import DataConfig, FastMRIConfig, MaskConfig
from mrdistill.data import fastmri_index
from mrdistill.data.coils import combine_coils, estimate_smaps, rss, simulate_coil_maps
from mrdistill.data.crop import center_crop
from mrdistill.data.build import make_datasets
from mrdistill.data.fastmri import FastMRISliceDataset, make_file_datasets
from mrdistill.data.fastmri_index import index_folder
from mrdistill.data.fastmri_io import inspect_file, ismrmrd_header_xml, parse_ismrmrd_header
from mrdistill.data.sample import collate_samples
from mrdistill.distill.task_loss import task_loss
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput
from mrdistill.physics.fft import fft2c, ifft2c
from mrdistill.physics.masks import fastmri_seed, make_mask
from mrdistill.train.inference import reconstruct

RANDOM4 = MaskConfig(kind="random", acceleration=4.0)


def data_cfg(tmp_path, **fm) -> DataConfig:
    return DataConfig(mode="complex", mask=RANDOM4,
                      fastmri=FastMRIConfig(cache_dir=str(tmp_path / "cache"), **fm))


def dataset(tmp_path, folder, split="val", **fm) -> FastMRISliceDataset:
    vols = index_folder(folder, tmp_path / "cache").volumes
    return FastMRISliceDataset(vols, data_cfg(tmp_path, **fm), split)


def test_header_round_trip_and_fastmri_padding_rule():
    enc = parse_ismrmrd_header(ismrmrd_header_xml((640, 368), (320, 320), pe_center=175, pe_maximum=349))
    assert enc.encoded_size == (640, 368) and enc.recon_size == (320, 320)
    # padding_left = 368 // 2 - 175; padding_right = padding_left + 349 + 1
    assert (enc.padding_left, enc.padding_right) == (9, 359)
    with pytest.raises(KeyError):
        parse_ismrmrd_header("<ismrmrdHeader><encoding/></ismrmrdHeader>")


def test_inspect_single_and_multi_coil(tmp_path):
    sc = inspect_file(write_fastmri_volume(tmp_path / "a.h5", slices=2, padding=(2, 22)))
    assert (sc.name, sc.num_slices, sc.coils, sc.height, sc.width) == ("a", 2, 0, 32, 24)
    assert sc.targets == {"reconstruction_esc": (16, 16)} and not sc.has_mask
    assert (sc.encoding.padding_left, sc.encoding.padding_right) == (2, 22)
    assert sc.attrs["acquisition"] == "CORPD_FBK" and sc.attrs["max"] > 0
    mc = inspect_file(write_fastmri_volume(tmp_path / "b.h5", slices=2, coils=3))
    assert mc.coils == 3 and "reconstruction_rss" in mc.targets


def test_metadata_cache_reused_until_a_file_changes(tmp_path, monkeypatch):
    folder = write_fastmri_folder(tmp_path / "f", 3, slices=2)
    first = index_folder(folder, tmp_path / "cache").volumes
    calls = []
    real = fastmri_index.inspect_files
    monkeypatch.setattr(fastmri_index, "inspect_files", lambda paths, limit: calls.extend(paths) or real(paths, limit))
    assert index_folder(folder, tmp_path / "cache").volumes == first and calls == []
    write_fastmri_volume(folder / "file1001.h5", slices=4, seed=9)  # replaced: size/mtime change
    again = index_folder(folder, tmp_path / "cache").volumes
    assert [p.name for p in calls] == ["file1001.h5"] and again[1].num_slices == 4
    assert index_folder(folder, "").volumes == again  # "" switches the cache off


def test_items_read_one_slice_lazily(tmp_path, monkeypatch):
    ds = dataset(tmp_path, write_fastmri_folder(tmp_path / "f", 1, slices=3))
    keys = []
    real = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda self, k: keys.append((self.name, k)) or real(self, k))
    ds[1]
    assert ("/kspace", 1) in keys and ("/reconstruction_esc", 1) in keys
    assert all(k == 1 for name, k in keys if name in ("/kspace", "/reconstruction_esc"))


def test_validation_masks_seeded_per_file_and_padding_never_sampled(tmp_path):
    ds = dataset(tmp_path, write_fastmri_folder(tmp_path / "f", 2, slices=3, padding=(3, 21)))
    masks = [ds[i].mask for i in range(len(ds))]
    assert torch.equal(masks[0], masks[1]) and torch.equal(masks[0], masks[2])
    assert not torch.equal(masks[0], masks[3])
    expected = make_mask("random", (32, 24), 4.0, seed=fastmri_seed("file1000.h5"))
    expected[..., :3] = 0
    expected[..., 21:] = 0
    assert torch.equal(masks[0], expected)
    s = ds[0]
    assert torch.equal(s.kspace, s.kspace * s.mask)  # unsampled columns hold exactly 0


def _fastmri_data():
    """fastMRI 0.3.0's own data modules, or a skip saying why they cannot be imported."""
    try:
        from fastmri.data import subsample  # noqa: PLC0415 - optional, for parity only
        from fastmri.data.mri_data import SliceDataset  # noqa: PLC0415
        from fastmri.data.transforms import VarNetDataTransform  # noqa: PLC0415
    except ImportError as exc:  # fastmri (or pandas/requests, which its data module imports)
        pytest.skip(f"fastMRI's package is not importable ({exc}); pip install --no-deps fastmri==0.3.0")
    return subsample, SliceDataset, VarNetDataTransform


@pytest.mark.parametrize("kind,func,acc,cf", [("random", "RandomMaskFunc", 4, 0.08),
                                               ("equispaced_fraction", "EquispacedMaskFractionFunc", 8, 0.04)])
def test_validation_masks_are_fastmris_own(tmp_path, kind, func, acc, cf):
    subsample, SliceDataset, VarNetDataTransform = _fastmri_data()
    folder = tmp_path / "singlecoil_val"
    for name, width, padding in (("file1000002.h5", 72, (4, 68)), ("file1001763.h5", 72, None),
                                 ("file_brain_AXT2_200_2000019.h5", 96, (2, 90))):
        write_fastmri_volume(folder / name, slices=2, width=width, padding=padding)
    theirs = SliceDataset(folder, challenge="singlecoil", use_dataset_cache=False,
                          transform=VarNetDataTransform(getattr(subsample, func)([cf], [acc]), use_seed=True))
    cfg = DataConfig(mode="complex", mask=MaskConfig(kind=kind, acceleration=acc, center_fraction=cf),
                     fastmri=FastMRIConfig(cache_dir=""))
    ours = FastMRISliceDataset(index_folder(folder, None).volumes, cfg, "val")
    names = [Path(v.path).name for v in ours.volumes]
    for i in range(len(theirs)):
        sample = theirs[i]
        j = [k for k in range(len(ours)) if names[int(ours.vol_ids[k])] == sample.fname
             and int(ours.slice_ids[k]) == sample.slice_num]
        assert len(j) == 1
        assert torch.equal(ours[j[0]].mask.flatten(), sample.mask.flatten().float())


def test_training_masks_per_slice_and_fresh_per_epoch(tmp_path):
    folder = write_fastmri_folder(tmp_path / "f", 1, slices=2, width=48)
    vols = index_folder(folder, tmp_path / "cache").volumes
    fixed = FastMRISliceDataset(vols, data_cfg(tmp_path), "train")
    assert not torch.equal(fixed[0].mask, fixed[1].mask)
    cfg = data_cfg(tmp_path)
    cfg.mask = MaskConfig(kind="random", acceleration=4.0, fresh_train_masks=True)
    fresh = FastMRISliceDataset(vols, cfg, "train")
    before = fresh[0].mask
    fresh.set_epoch(1)
    assert not torch.equal(before, fresh[0].mask)


def test_targets_max_and_normalisation(tmp_path):
    path = write_fastmri_volume(tmp_path / "f" / "v.h5", slices=2, both_targets=True)
    with h5py.File(path) as f:
        esc, peak = f["reconstruction_esc"][1], float(f.attrs["max"])
    s = dataset(tmp_path, tmp_path / "f")[1]
    assert s.target.shape == (1, 16, 16) and float(s.max_value) == pytest.approx(1.0)
    assert torch.allclose(s.target[0], torch.from_numpy(esc / peak), rtol=1e-5)  # ESC, not RSS
    raw = dataset(tmp_path, tmp_path / "f", normalize=False)[1]
    assert torch.equal(raw.target[0], torch.from_numpy(esc)) and float(raw.max_value) == pytest.approx(peak)
    assert torch.allclose(raw.kspace * (1 / peak), s.kspace, rtol=1e-4, atol=1e-6)


def test_test_files_used_as_acquired(tmp_path):
    path = write_fastmri_volume(tmp_path / "t" / "v.h5", slices=2, test_acceleration=4)
    with h5py.File(path) as f:
        stored_mask, k1 = f["mask"][()], f["kspace"][1]
    ds = dataset(tmp_path, tmp_path / "t", split="test")
    s = ds[1]
    assert s.target is None and torch.equal(s.mask[0, 0], torch.from_numpy(stored_mask.astype(np.float32)))
    assert torch.allclose(s.kspace[0] * ds.volume_scale(0), torch.from_numpy(k1), rtol=1e-5, atol=1e-12)
    assert ds.crop_size(0) == (16, 16)  # recon size from the header


def test_estimated_smaps_and_coil_combination():
    h, w = 32, 32
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    image = ((xx**2 + yy**2) < 0.6).float() * (1 + 0.3 * xx)
    coils = simulate_coil_maps(4, (h, w)) * image.to(torch.complex64)
    assert torch.allclose(rss(simulate_coil_maps(4, (h, w)), dim=0), torch.ones(h, w), atol=1e-5)
    kspace = fft2c(coils)
    mask = make_mask("random", (h, w), 4.0, seed=1, center_fraction=0.25)
    smaps = estimate_smaps(kspace, mask)
    inside = image > 0
    assert torch.allclose(rss(smaps, dim=0)[inside], torch.ones(int(inside.sum())), atol=1e-3)
    combined = combine_coils(ifft2c(kspace), smaps)[0].abs()
    err = (combined - rss(ifft2c(kspace), dim=0))[inside].abs().max() / image.max()
    assert err < 0.02  # RSS equals |sum conj(S) x| when S matches the coil profiles
    with pytest.raises(MrdistillError, match="central column"):
        estimate_smaps(kspace, torch.zeros(1, 1, w))


@pytest.mark.parametrize("coil_mode", ["combine", "multi"])
def test_multicoil_samples(tmp_path, coil_mode):
    folder = write_fastmri_folder(tmp_path / "mc", 1, slices=2, coils=3)
    s = dataset(tmp_path, folder, coil_mode=coil_mode)[0]
    assert s.target.shape == (1, 16, 16)
    if coil_mode == "combine":
        assert s.kspace.shape == (1, 32, 24) and s.smaps is None and s.zero_filled.shape == (2, 32, 24)
    else:
        assert s.kspace.shape == (3, 32, 24) and s.smaps.shape == (3, 32, 24)
        assert s.zero_filled.shape == (6, 32, 24)
        batch = collate_samples([s, s])
        assert batch.smaps.shape == (2, 3, 32, 24)


@pytest.mark.skipif(importlib.util.find_spec("sigpy") is None, reason="sigpy not installed")
def test_espirit_coil_maps_are_computed_once_per_slice(tmp_path):
    folder = write_fastmri_folder(tmp_path / "mc", 1, slices=1, coils=3, height=32, width=32)
    vols = index_folder(folder, tmp_path / "cache").volumes
    wide = MaskConfig(kind="equispaced_fraction", acceleration=2.0, center_fraction=0.4)
    cfg = replace(data_cfg(tmp_path, coil_mode="multi"), mask=wide)
    ratio = FastMRISliceDataset(vols, cfg, "val")[0].smaps
    esp = FastMRISliceDataset(vols, replace(cfg, coil_maps="espirit"), "val")
    first, again = esp[0].smaps, esp[0].smaps
    assert first.shape == ratio.shape == (3, 32, 32) and again is first
    assert not torch.allclose(first, ratio, atol=1e-3)
    np.testing.assert_allclose((first.abs() ** 2).sum(0).numpy(), 1.0, atol=1e-3)


def test_make_datasets_dispatch_and_val_test_halves(tmp_path):
    write_fastmri_folder(tmp_path / "singlecoil_train", 2, slices=2)
    write_fastmri_folder(tmp_path / "singlecoil_val", 3, slices=2)
    cfg = data_cfg(tmp_path)
    cfg.dataset, cfg.path, cfg.max_eval_slices = "fastmri", str(tmp_path), 3
    sets = make_datasets(cfg)
    assert len(sets["train"]) == 4
    val = {v.name for v in sets["val"].volumes}
    test = {v.name for v in sets["test"].volumes}
    assert val == {"file1000", "file1002"} and test == {"file1001"} and len(sets["val"]) == 3
    cfg.labeled_train_slices = 1
    semi = make_file_datasets(cfg)
    assert len(semi["train"]) == 1 and len(semi["unlabeled"]) == 3 and semi["unlabeled"][0].target is None
    cfg.mode = "real"
    with pytest.raises(MrdistillError, match="data.mode: complex"):
        make_datasets(cfg)


def test_mixed_widths_are_grouped_and_reconstructed(tmp_path):
    folder = tmp_path / "f"
    write_fastmri_volume(folder / "a.h5", slices=3, width=24)
    write_fastmri_volume(folder / "b.h5", slices=3, width=20)
    ds = dataset(tmp_path, folder)
    assert sorted(len(g) for g in ds.groups()) == [3, 3]
    recons, _ = reconstruct(None, ds, batch_size=4)  # a batch of 4 would straddle the two widths
    assert recons["a"].prediction.shape == (3, 16, 16) and recons["b"].prediction.shape == (3, 16, 16)


def test_task_loss_crops_to_the_target():
    image = torch.rand(2, 1, 12, 10)
    target = image[..., 2:10, 1:9].clone()
    assert float(task_loss(ReconOutput(image, {}), target)) == 0.0
    assert torch.equal(center_crop(image, (8, 8)), target)


@pytest.mark.parametrize("damage, message", [
    ("truncate", "truncated HDF5 file"),
    ("text", "not an HDF5 file"),
    ("no_kspace", "no 'kspace' dataset"),
    ("multicoil", "holds multicoil k-space but the challenge is singlecoil"),
])
def test_bad_files_named_or_skipped(tmp_path, damage, message):
    folder = write_fastmri_folder(tmp_path / "singlecoil_val", 3, slices=2)
    bad = folder / "file1001.h5"
    if damage == "truncate":
        bad.write_bytes(bad.read_bytes()[:3000])
    elif damage == "text":
        bad.write_text("not hdf5")
    elif damage == "no_kspace":
        with h5py.File(bad, "a") as f:
            del f["kspace"]
    else:
        write_fastmri_volume(bad, slices=2, coils=2)
    write_fastmri_folder(tmp_path / "singlecoil_train", 1, slices=2)
    cfg = data_cfg(tmp_path)
    cfg.dataset, cfg.path = "fastmri", str(tmp_path)
    with pytest.raises(MrdistillError, match=message) as info:
        make_datasets(cfg)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    if damage != "multicoil":
        index = index_folder(folder, tmp_path / "cache", skip_bad=True)
        assert [v.name for v in index.volumes] == ["file1000", "file1002"] and index.bad[0][0] == str(bad)


def test_nan_kspace_named_with_its_slice(tmp_path):
    path = write_fastmri_volume(tmp_path / "f" / "v.h5", slices=2)
    with h5py.File(path, "a") as f:
        f["kspace"][1, 3, 4] = np.nan
    ds = dataset(tmp_path, tmp_path / "f")
    ds[0]
    with pytest.raises(MrdistillError, match=r"v.h5: k-space slice 1 contains NaN or Inf"):
        ds[1]


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MrdistillError, match="no .h5 files"):
        index_folder(tmp_path / "empty", "")
    with pytest.raises(MrdistillError, match="folder not found"):
        index_folder(tmp_path / "nope", "")
