"""evaluate_models: the classical rows (CG-SENSE, L1-wavelet) next to zero-filled on multi-coil data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mrdistill.config import DataConfig, FastMRIConfig, MaskConfig
from mrdistill.data.fastmri import FastMRISliceDataset
from mrdistill.data.fastmri_index import index_folder
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from tests.data.format_fixtures import write_fastmri_folder


def _dataset(tmp_path: Path, coils: int) -> FastMRISliceDataset:
    folder = write_fastmri_folder(tmp_path / f"c{coils}", 1, slices=2, coils=coils, height=32,
                                  width=32, recon=(32, 32))
    challenge = "multicoil" if coils else "singlecoil"
    cfg = DataConfig(mode="complex", mask=MaskConfig(kind="equispaced_fraction", acceleration=2,
                                                     center_fraction=0.25),
                     fastmri=FastMRIConfig(challenge=challenge, coil_mode="multi", cache_dir=""))
    return FastMRISliceDataset(index_folder(folder, "").volumes, cfg, "test", challenge=challenge)


def test_multicoil_tables_get_cg_sense_next_to_zero_filled(tmp_path):
    ev = evaluate_models({"zero-filled": None}, _dataset(tmp_path, 6))
    rows = list(ev.per_volume)
    assert rows[:2] == ["zero-filled", "CG-SENSE"]
    assert ("L1-wavelet" in rows) == (importlib.util.find_spec("sigpy") is not None)
    zf, sense = ev.per_volume["zero-filled"][0], ev.per_volume["CG-SENSE"][0]
    assert sense["psnr"] > zf["psnr"] + 3, (zf, sense)  # 2x with 6 coils: SENSE unfolds it
    table = write_evaluation(tmp_path / "run", ev, "t", ["note"], figures=1)
    assert "| CG-SENSE" in table
    report = (tmp_path / "run" / "report.md").read_text()
    assert "CG-SENSE: Tikhonov-regularised SENSE" in report


def test_single_coil_tables_say_why_there_is_no_cg_sense_row(tmp_path):
    ev = evaluate_models({"zero-filled": None}, _dataset(tmp_path, 0))
    assert list(ev.per_volume) == ["zero-filled"]
    assert any("no CG-SENSE row: single-coil" in n for n in ev.notes)
    assert list(evaluate_models({"zero-filled": None}, _dataset(tmp_path, 0), baselines=False).notes) == []


@pytest.mark.skipif(importlib.util.find_spec("sigpy") is not None, reason="sigpy installed")
def test_without_sigpy_the_note_names_the_extra(tmp_path):
    ev = evaluate_models({"zero-filled": None}, _dataset(tmp_path, 4))
    assert any("mrdistill[measured]" in n for n in ev.notes)
