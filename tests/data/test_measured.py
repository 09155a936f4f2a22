"""`prepare --from measured` on stand-in archives: hash checks, atomic cache writes, the files it
writes, and `data.dataset: measured` over them. (The real download and conversion:
benchmarks/measured_data.py.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mrdistill.config import DataConfig, FastMRIConfig, MaskConfig, MeasuredConfig
from mrdistill.data import measured
from mrdistill.data.build import make_datasets
from mrdistill.data.fastmri_io import inspect_file
from mrdistill.errors import MrdistillError
from tests.data.measured_fixtures import install_stand_ins


def _no_download(spec, folder):
    raise MrdistillError(f"could not download {spec.requirement} with pip (offline)")


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    return install_stand_ins(tmp_path, monkeypatch)


def test_prepare_writes_fastmri_files_with_noise_and_header(stand_ins):
    folder, manifest = measured.prepare_measured(cache_dir=stand_ins, download=_no_download)
    assert folder == stand_ins / "measured"
    assert sorted(p.name for p in folder.iterdir()) == ["measured.json", "pyqmri_coils.npy",
                                                        "pyqmri_vfa.h5", "twix_gre.h5"]
    vfa, gre = inspect_file(folder / "pyqmri_vfa.h5"), inspect_file(folder / "twix_gre.h5")
    assert (vfa.num_slices, vfa.coils, vfa.height, vfa.width) == (10, 3, 24, 20)
    assert (gre.num_slices, gre.coils, gre.height, gre.width) == (1, 2, 20, 16)
    assert gre.encoding.encoded_size == (20, 16) and vfa.targets["reconstruction_rss"] == (24, 20)
    with h5py.File(folder / "twix_gre.h5") as f:
        header = f["ismrmrd_header"][()]
        header = header.decode() if isinstance(header, bytes) else header
        assert "<fieldOfView_mm><x>200</x><y>200</y><z>4</z>" in header
        assert f.attrs["noise_std"].shape == (2,)
        assert f["kspace"].dtype == np.complex64
    doc = json.loads((folder / "measured.json").read_text())
    assert doc["format"] == "mrdistill.measured/1"
    assert [e["kspace_shape"] for e in doc["files"]] == [[10, 3, 24, 20], [1, 2, 20, 16]]
    assert np.load(folder / "pyqmri_coils.npy").shape == (3, 24, 20)
    # a second call keeps the complete folder as it is
    mtime = (folder / "pyqmri_vfa.h5").stat().st_mtime_ns
    measured.prepare_measured(cache_dir=stand_ins, download=_no_download)
    assert (folder / "pyqmri_vfa.h5").stat().st_mtime_ns == mtime


def _leftovers(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.name.startswith("."))


def test_substituted_archive_stops_and_leaves_nothing_half_written(stand_ins):
    spec = measured.ARCHIVES["twixtools"]
    (stand_ins / "measured-archives" / spec.filename).write_bytes(b"not the pinned archive")
    with pytest.raises(MrdistillError, match="is not the pinned .* substituted archive") as err:
        measured.prepare_measured(cache_dir=stand_ins, download=_no_download)
    assert "\n" not in str(err.value) and spec.filename in str(err.value)
    assert not (stand_ins / "measured").exists() and _leftovers(stand_ins) == []


def test_download_is_renamed_into_place_only_when_its_hash_is_right(stand_ins):
    spec = measured.ARCHIVES["pyqmri"]
    good = (stand_ins / "measured-archives" / spec.filename).read_bytes()
    (stand_ins / "measured-archives" / spec.filename).unlink()

    def damaged(s, folder):
        (folder / s.filename).write_bytes(good[: len(good) // 2])

    with pytest.raises(MrdistillError, match="damaged or substituted"):
        measured.prepare_measured(cache_dir=stand_ins, download=damaged)
    assert not (stand_ins / "measured-archives" / spec.filename).exists()
    assert not (stand_ins / "measured").exists() and _leftovers(stand_ins) == []

    def fine(s, folder):
        (folder / s.filename).write_bytes(good)

    folder, _ = measured.prepare_measured(cache_dir=stand_ins, download=fine)
    assert (stand_ins / "measured-archives" / spec.filename).read_bytes() == good
    assert (folder / "pyqmri_vfa.h5").is_file()


def test_offline_says_what_to_fetch(stand_ins):
    (stand_ins / "measured-archives" / measured.ARCHIVES["pyqmri"].filename).unlink()
    with pytest.raises(MrdistillError, match="could not download pyqmri==1.3.0"):
        measured.prepare_measured(cache_dir=stand_ins, download=_no_download)
    assert not (stand_ins / "measured").exists() and _leftovers(stand_ins) == []


def test_pip_failure_is_one_line(tmp_path, monkeypatch):
    spec = dataclasses.replace(measured.ARCHIVES["twixtools"], version="0.0.0.does.not.exist")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no index at all: pip fails at once, offline or not
    with pytest.raises(MrdistillError, match=r"could not download twixtools==0.0.0.does.not.exist with pip .*pip download") as err:
        measured.fetch_archive(spec, tmp_path)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_conversion_leaves_no_measured_folder(tmp_path, monkeypatch):
    cache = install_stand_ins(tmp_path, monkeypatch, readouts=[], noise=np.ones((2, 40), np.complex64))
    with pytest.raises(MrdistillError, match="gre.dat: no image data"):
        measured.prepare_measured(cache_dir=cache, download=_no_download)
    assert not (cache / "measured").exists() and _leftovers(cache) == []


def test_measured_dataset_holds_out_whole_contrasts(stand_ins):
    folder, _ = measured.prepare_measured(cache_dir=stand_ins, download=_no_download)
    cfg = DataConfig(dataset="measured", path=str(folder), mode="complex",
                     mask=MaskConfig(kind="random", acceleration=4, center_fraction=0.25),
                     fastmri=FastMRIConfig(challenge="multicoil", coil_mode="multi", cache_dir=""))
    data = make_datasets(cfg)
    assert data["val"].items() == [(0, 4)]
    assert data["test"].items() == [(0, 0), (0, 9), (1, 0)]
    assert sorted(s for _, s in data["train"].items()) == [1, 2, 3, 5, 6, 7, 8]
    sample = data["test"][2]
    assert sample.kspace.shape == (2, 20, 16) and sample.smaps.shape == (2, 20, 16)
    with pytest.raises(MrdistillError, match="share flip angle"):
        make_datasets(dataclasses.replace(cfg, measured=MeasuredConfig(val=[0], test=[0])))
    # the site setting: a few training contrasts keep their targets, the rest come without
    site = make_datasets(dataclasses.replace(cfg, labeled_train_slices=3))
    assert [s for _, s in site["train"].items()] == [1, 5, 8]
    assert [s for _, s in site["unlabeled"].items()] == [2, 3, 6, 7]
    assert site["unlabeled"][0].target is None and site["train"][0].target is not None
    assert site["test"].items() == data["test"].items() and site["val"].items() == data["val"].items()
    with pytest.raises(MrdistillError, match="prepare --from measured"):
        make_datasets(dataclasses.replace(cfg, path=str(stand_ins / "nothing")))


def test_without_twixtools_the_command_names_the_extra(stand_ins, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "twixtools" else real(name, *a))
    with pytest.raises(MrdistillError, match=r"pip install 'mrdistill\[measured\]'"):
        measured.prepare_measured(cache_dir=stand_ins, download=_no_download)
    assert not (stand_ins / "measured").exists()
