"""Held-out real images: rows, the below-zero-filled marks, missing packages, the written report."""

from __future__ import annotations

import dataclasses
import importlib.util

import torch

from mrdistill.config import AugmentConfig, DataConfig, MaskConfig
from mrdistill.data import sources
from mrdistill.data.sources import HELDOUT
from mrdistill.models import build_model
from mrdistill.train import heldout
from mrdistill.train.heldout import (MEAN, below_zero_filled, heldout_config, heldout_markdown,
                                     installed_heldout, write_heldout)

ROWS = [{"set": "h", "acceleration": 4.0, "image": img, "model": m, "psnr": p, "ssim": s}
        for img, m, p, s in [("a", "zero-filled", 30.0, 0.90), ("a", "net", 31.0, 0.85),
                             ("b", "zero-filled", 20.0, 0.70), ("b", "net", 19.0, 0.75),
                             ("c", "zero-filled", 25.0, 0.80), ("c", "net", 26.0, 0.81),
                             (MEAN, "zero-filled", 25.0, 0.80), (MEAN, "net", 25.3, 0.803)]]


def test_below_zero_filled_counts_either_metric_and_skips_the_mean():
    assert below_zero_filled(ROWS, ["net"]) == {"net": ["a", "b"]}
    assert below_zero_filled([r for r in ROWS if r["image"] != "b"], ["net"]) == {"net": ["a"]}


def test_markdown_marks_the_metric_that_loses():
    text = heldout_markdown(ROWS, ["net"])
    assert "| a | 30.00 / 0.9000 | 31.00 / 0.8500 (-S) |" in text
    assert "| b | 20.00 / 0.7000 | 19.00 / 0.7500 (-P) |" in text
    assert "| c | 25.00 / 0.8000 | 26.00 / 0.8100 |" in text
    assert "model-image pairs below zero-filled in PSNR or SSIM: 2" in text


def test_config_for_testing_drops_augmentation_and_labels():
    trained = DataConfig(image_size=32, labeled_train_slices=4, augment=AugmentConfig(enabled=True),
                         mask=MaskConfig(acceleration=4.0))
    cfg = heldout_config(trained, 8.0, sources=["mni"])
    assert not cfg.augment.enabled and cfg.labeled_train_slices is None
    assert cfg.mask.acceleration == 8.0 and cfg.sources == ["mni"] and cfg.image_size == 32
    assert trained.mask.acceleration == 4.0  # the caller's config is not changed


def test_missing_package_gives_a_hint_and_keeps_the_rest(monkeypatch):
    gone = dataclasses.replace(sources.SOURCES["shoulder_t1_se"], package="no_such_package_xyz")
    monkeypatch.setitem(sources.SOURCES, "shoulder_t1_se", gone)
    names, hints = installed_heldout()
    assert "shoulder_t1_se" not in names and set(names) < set(HELDOUT)
    assert hints == ["held-out images need pydicom-data (pip install 'mrdistill[heldout]')"]


def test_write_heldout_scores_every_installed_image(tmp_path):
    assert importlib.util.find_spec("data_store") is not None, "the heldout extra is a test dependency"
    torch.manual_seed(0)
    net = build_model("dccnn", cascades=1, convs=2, channels=4, in_channels=1).eval()
    line = write_heldout(tmp_path / "heldout", {"net": net}, DataConfig(image_size=32), 4.0, 0, "cpu")
    report = (tmp_path / "heldout" / "report.md").read_text()
    for name in HELDOUT:
        assert f"| {name} | " in report
    # The line's count is the per-image table's: an untrained net is below zero-filled somewhere.
    flagged = sum("(-" in row for row in report.splitlines() if row.startswith("| ") and "(mean)" not in row)
    assert f"net {flagged};" in line and flagged > 0
    assert len(list((tmp_path / "heldout" / "figures").glob("*.png"))) == len(HELDOUT)


def test_write_heldout_without_any_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(heldout, "installed_heldout", lambda: ((), ["held-out images need x"]))
    line = write_heldout(tmp_path / "h", {}, DataConfig(image_size=32), 4.0, 0, "cpu")
    assert line == "held-out real images: none installed; held-out images need x"
    assert not (tmp_path / "h").exists()
