"""Comparison figure: a valid PNG of plausible size, and clear errors on bad requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrdistill.errors import MrdistillError
from mrdistill.eval.figures import _column_order, save_panel


@pytest.fixture(scope="module")
def slices() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :32]
    target = np.exp(-((yy - 20) ** 2 + (xx - 16) ** 2) / 80.0)
    images = {
        "zero-filled": target * 0.8,
        "teacher": target + 0.01 * rng.standard_normal(target.shape),
        "student": target + 0.03 * rng.standard_normal(target.shape),
        "distilled": target + 0.02 * rng.standard_normal(target.shape),
    }
    return target, images


def test_column_order_puts_target_second() -> None:
    order = _column_order({"zero-filled": 0, "teacher": 0, "student": 0})
    assert order == ["zero-filled", "target", "teacher", "student"]


def test_panel_is_a_valid_png(tmp_path: Path, slices: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    target, images = slices
    path = tmp_path / "figures" / "slice.png"
    save_panel(path, target, images, ["zero-filled", "student", "distilled"], title="vol1 slice 3")
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        width, height = im.size
    assert 600 <= width <= 2000 and 300 <= height <= 1200  # 5 tiles wide, 2 rows, ~100 dpi
    assert width > height
    assert [p.name for p in path.parent.iterdir()] == ["slice.png"]  # written atomically


def test_panel_without_error_row_and_fixed_scale(
    tmp_path: Path, slices: tuple[np.ndarray, dict[str, np.ndarray]]
) -> None:
    target, images = slices
    one_row, two_rows = tmp_path / "a.png", tmp_path / "b.png"
    save_panel(one_row, target, {"teacher": images["teacher"]}, [])
    save_panel(two_rows, target, {"teacher": images["teacher"]}, ["teacher"], error_scale=0.1)
    with Image.open(one_row) as a, Image.open(two_rows) as b:
        assert a.size[1] < b.size[1]


def test_panel_rejects_bad_requests(tmp_path: Path, slices: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    target, images = slices
    with pytest.raises(MrdistillError, match="unet"):
        save_panel(tmp_path / "x.png", target, images, ["unet"])
    with pytest.raises(MrdistillError, match="shape"):
        save_panel(tmp_path / "x.png", target, {"teacher": target[:-1]}, [])
    with pytest.raises(MrdistillError, match="reserved"):
        save_panel(tmp_path / "x.png", target, {"target": target}, [])
    with pytest.raises(MrdistillError):
        save_panel(tmp_path / "x.png", target, {}, [])
    assert not (tmp_path / "x.png").exists()
