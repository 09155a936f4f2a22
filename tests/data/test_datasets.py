import numpy as np
import pytest
import torch

from mrdistill.config import DataConfig, MaskConfig
from mrdistill.data.build import make_datasets
from mrdistill.data.datasets import SliceDataset, build_splits, heldout_dataset
from mrdistill.data.splits import assign_slabs, split_labeled
from mrdistill.data.sample import collate_samples
from mrdistill.data.simulate import simulate_kspace, smooth_phase, square_resize
from mrdistill.data import sources
from mrdistill.data.sources import HELDOUT, SOURCES, load_source
from mrdistill.errors import MrdistillError
from mrdistill.physics.fft import ifft2c


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_embedded_sources_load_from_installed_packages(name):
    vol = load_source(name)
    assert vol.ndim == 3 and vol.dtype == np.float32 and vol.max() > 0


def test_every_source_is_documented():
    for name, src in SOURCES.items():
        assert src.description and src.contrast and src.licence, name
    assert set(HELDOUT) <= set(SOURCES)
    assert not set(HELDOUT) & set(DataConfig().sources)


def test_heldout_set_one_fixed_mask_per_image():
    cfg = DataConfig(image_size=32)
    ds = heldout_dataset(cfg, seed=3)
    vols = [r.volume for r in ds.records]
    assert list(dict.fromkeys(vols)) == list(HELDOUT)
    assert all(abs(float(r.image.max()) - 1.0) < 1e-6 for r in ds.records)
    head = [i for i, v in enumerate(vols) if v == "head_t1_3t"]
    assert len(head) > 1 and torch.equal(ds[head[0]].mask, ds[head[1]].mask)
    other = heldout_dataset(cfg, seed=4)  # test masks do not depend on the run seed
    assert torch.equal(ds[0].kspace, other[0].kspace) and ds[0].target.shape == (1, 32, 32)


def test_missing_heldout_extra_names_it(monkeypatch):
    def missing(package):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(sources.importlib.resources, "files", missing)
    with pytest.raises(MrdistillError, match=r"needs the pydicom-data package.*mrdistill\[heldout\]"):
        load_source("shoulder_t1_se")


def test_unknown_source():
    with pytest.raises(MrdistillError, match="unknown embedded source 'oasis'"):
        load_source("oasis")


def test_slab_assignment_is_deterministic_and_interleaved():
    splits = assign_slabs(20, [0.7, 0.15, 0.15])
    assert splits == assign_slabs(20, [0.7, 0.15, 0.15])
    assert splits.count("train") == 14 and splits.count("val") == 3 and splits.count("test") == 3
    assert splits.index("test") < 10  # test slabs are spread, not all at the end


def test_splits_never_share_a_slice(tiny_data):
    rec = build_splits(DataConfig(image_size=32, slab=4))
    keys = {s: {(r.volume, r.slice_index) for r in rec[s]} for s in rec}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"]
    vols = {s: {r.volume for r in rec[s]} for s in rec}
    assert not vols["train"] & vols["test"]
    assert all(abs(r.image.max() - 1.0) < 1e-6 for r in rec["train"])


def test_samples_have_documented_shapes(tiny_data):
    ds = make_datasets(tiny_data)
    s = ds["train"][0]
    assert s.kspace.shape == (1, 32, 32) and s.kspace.dtype == torch.complex64
    assert s.mask.shape == (1, 1, 32) and s.zero_filled.shape == (1, 32, 32)
    assert s.target.shape == (1, 32, 32) and float(s.max_value) == pytest.approx(1.0)
    batch = collate_samples([ds["train"][i] for i in range(3)])
    assert batch.kspace.shape == (3, 1, 32, 32) and len(batch.volume) == 3


def test_complex_mode_has_two_channels_and_phase(tiny_data):
    tiny_data.mode = "complex"
    s = make_datasets(tiny_data)["val"][0]
    assert s.zero_filled.shape == (2, 32, 32)
    assert s.zero_filled[1].abs().max() > 0  # a non-trivial imaginary part


def test_eval_masks_fixed_per_volume_and_train_masks_fresh_when_asked(tiny_data):
    ds = make_datasets(tiny_data)
    test = ds["test"]
    same_vol = [i for i in range(len(test)) if test.records[i].volume == test.records[0].volume]
    assert len(same_vol) > 1 and torch.equal(test[same_vol[0]].mask, test[same_vol[1]].mask)
    tiny_data.mask = MaskConfig(fresh_train_masks=True)
    train = make_datasets(tiny_data)["train"]
    m0 = train[0].mask
    train.set_epoch(1)
    assert not torch.equal(m0, train[0].mask)


def test_no_target_in_self_supervised_mode(tiny_data):
    records = build_splits(tiny_data)["train"]
    ds = SliceDataset(records, tiny_data, "train", with_target=False)
    assert ds[0].target is None and collate_samples([ds[0], ds[1]]).target is None


def test_simulation_round_trip_and_noise():
    img = torch.rand(16, 16)
    k, x = simulate_kspace(img, "real", seed=0)
    torch.testing.assert_close(ifft2c(k).real[0], img, atol=1e-5, rtol=0)
    k2, x2 = simulate_kspace(img, "complex", seed=0, noise_std=0.01)
    torch.testing.assert_close(x2.abs()[0], img, atol=1e-5, rtol=0)
    assert (ifft2c(k2) - x2).abs().std() > 0.005
    assert torch.equal(smooth_phase((8, 8), 1), smooth_phase((8, 8), 1))


def test_square_resize_pads_then_resizes():
    out = square_resize(np.ones((10, 20), np.float32), 8)
    assert out.shape == (8, 8) and out[0].max() < out[4].max()


def test_bad_data_config():
    with pytest.raises(MrdistillError, match="data mode"):
        build_splits(DataConfig(mode="polar"))
    with pytest.raises(MrdistillError, match="unknown mask kind"):
        make_datasets(DataConfig(image_size=32, mask=MaskConfig(kind="spiral")))["train"][0]


def test_labeled_subset_and_undersampled_only_rest(tiny_data):
    tiny_data.labeled_train_slices = 3
    ds = make_datasets(tiny_data)
    assert len(ds["train"]) == 3 and len(ds["unlabeled"]) == 5
    assert all(ds["unlabeled"][i].target is None for i in range(len(ds["unlabeled"])))
    seen = {(r.volume, r.slice_index) for r in ds["train"].records}
    assert not seen & {(r.volume, r.slice_index) for r in ds["unlabeled"].records}


@pytest.mark.parametrize("n,labeled", [(7, 1), (7, 3), (7, 6), (10, 4), (5, 5), (5, 9), (5, None)])
def test_split_labeled_keeps_every_item_once_in_order(n, labeled):
    items = list(range(n))
    kept, rest = split_labeled(items, labeled)
    assert sorted(kept + rest) == items and not set(kept) & set(rest)
    assert kept == sorted(kept) and rest == sorted(rest)
    assert len(kept) == min(n, labeled or n) and kept[0] == 0
    assert labeled == 1 or kept[-1] == n - 1  # spread over the whole range
    with pytest.raises(MrdistillError, match="at least 1"):
        split_labeled(items, 0)


def test_simulated_coils_on_the_embedded_corpus(tiny_data):
    img = torch.rand(16, 16)
    k, x = simulate_kspace(img, "complex", seed=0, coils=4)
    assert k.shape == (4, 16, 16)
    torch.testing.assert_close(ifft2c(k).abs().square().sum(0).sqrt(), img, atol=1e-5, rtol=0)  # RSS = |x|
    tiny_data.mode, tiny_data.coils = "complex", 3
    s = make_datasets(tiny_data)["train"][0]
    assert s.kspace.shape[0] == 3 and s.zero_filled.shape[0] == 6 and s.target.shape[0] == 1
    assert s.smaps.shape == (3, *s.kspace.shape[-2:]) and make_datasets(DataConfig())["train"][0].smaps is None
    with pytest.raises(MrdistillError, match="data.coils > 1 needs data.mode: complex"):
        make_datasets(DataConfig(coils=2))
    with pytest.raises(MrdistillError, match="data.coils"):
        make_datasets(DataConfig(coils=0))


def test_simulated_coils_carry_maps_estimated_as_from_files(tiny_data):
    """The maps come from the calibration region (as a measured file's would), not from the
    simulation: sum_c |S_c|^2 = 1 on the object, the sensitivity-weighted combination of the fully
    sampled coil images is the target up to phase, and a slice keeps its maps across fresh masks."""
    tiny_data.mode, tiny_data.coils = "complex", 4
    tiny_data.mask = MaskConfig(kind="random", acceleration=4.0, center_fraction=0.125, fresh_train_masks=True)
    train = make_datasets(tiny_data)["train"]
    s = train[0]
    power = s.smaps.abs().square().sum(0)
    obj = s.target[0] > 0.2 * s.target.max()
    torch.testing.assert_close(power[obj], torch.ones_like(power[obj]), atol=2e-3, rtol=0)
    full, _ = train._full_kspace(0)
    combined = (s.smaps.conj() * ifft2c(full)).sum(0).abs()
    assert float((combined - s.target[0])[obj].abs().mean()) < 0.1 * float(s.target[0][obj].mean())
    train.set_epoch(1)
    again = train[0]
    assert not torch.equal(again.mask, s.mask) and again.smaps is s.smaps  # kept per calibration block
    batch = collate_samples([train[0], train[1]])
    assert batch.smaps.shape == (2, 4, *s.kspace.shape[-2:])
