"""Report writing: summaries, the markdown table, and round trips of metrics.json / per_slice.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from mrdistill.errors import MrdistillError
from mrdistill.eval.report import (
    markdown_table,
    read_metrics_json,
    summarise,
    write_metrics_json,
    write_per_slice_csv,
    write_report_md,
)


def vol(psnr: float, ssim: float, nmse: float, hfen: float) -> dict[str, float]:
    return {"psnr": psnr, "ssim": ssim, "nmse": nmse, "hfen": hfen}


PER_VOLUME = {
    "zero-filled": [vol(28.0, 0.70, 0.05, 0.6), vol(30.0, 0.72, 0.04, 0.5)],
    "teacher": [vol(36.0, 0.93, 0.0004, 0.2), vol(37.0, 0.94, 0.0003, 0.1)],
    "student": [vol(35.5, 0.92, 0.006, 0.25)],
}


def test_summarise_mean_and_two_sd() -> None:
    summary = summarise(PER_VOLUME)
    assert list(summary) == ["zero-filled", "teacher", "student"]
    mean, two_sd = summary["zero-filled"]["psnr"]
    assert mean == 29.0
    assert two_sd == pytest.approx(2 * np.std([28.0, 30.0], ddof=1))
    assert summary["student"]["ssim"] == (0.92, 0.0)


def test_summarise_rejects_inconsistent_volumes() -> None:
    with pytest.raises(MrdistillError, match="volume 1"):
        summarise({"a": [{"psnr": 1.0, "ssim": 0.5}, {"psnr": 2.0}]})
    with pytest.raises(MrdistillError, match="no volumes"):
        summarise({"a": []})


def test_markdown_table_rows_columns_and_formatting() -> None:
    extra = {"teacher": {"params": "141,765", "ms/slice": "3.1"}, "student": {"params": "49,285"}}
    table = markdown_table(summarise(PER_VOLUME), extra)
    lines = table.rstrip("\n").split("\n")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Model", "PSNR (dB)", "SSIM", "NMSE", "HFEN", "params", "ms/slice"]
    assert set(lines[1].replace("|", "")) == {"-"}
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[0] for r in rows] == ["zero-filled", "teacher", "student"]
    assert all(len(r) == len(header) for r in rows)
    assert rows[0][1] == "29.00 ± 2.83"
    assert rows[1][2] == "0.9350 ± 0.0141"
    assert rows[2][2] == "0.9200 ± 0.0000"
    # The teacher's NMSE (3.5e-4) would print as 0.0003/0.0004: the whole column goes scientific.
    assert rows[1][3] == "3.50e-04 ± 1.41e-04"
    assert rows[0][3] == "4.50e-02 ± 1.41e-02"
    assert rows[1][5:] == ["141,765", "3.1"]
    assert rows[0][5:] == ["—", "—"]  # zero-filled has no extra values
    assert rows[2][6] == "—"


def test_markdown_table_options_and_errors() -> None:
    summary = summarise(PER_VOLUME)
    table = markdown_table(summary, metrics=("psnr", "ssim"), precision={"psnr": 1})
    assert "| teacher | 36.5 ± 1.4 | 0.9350 ± 0.0141 |" in table
    with pytest.raises(MrdistillError, match="vif"):
        markdown_table(summary, metrics=("psnr", "vif"))
    with pytest.raises(MrdistillError, match="unknown model"):
        markdown_table(summary, extra={"techer": {"params": "1"}})
    piped = markdown_table({"a|b": {"psnr": (1.0, 0.0)}}, metrics=("psnr",))
    assert "| a\\|b |" in piped


def test_metrics_json_round_trip(tmp_path: Path) -> None:
    summary = summarise(PER_VOLUME)
    summary["perfect"] = {"psnr": (math.inf, math.nan)}  # JSON has no inf/nan: must survive anyway
    extra = {"teacher": {"params": "141,765"}}
    path = tmp_path / "run" / "metrics.json"
    write_metrics_json(path, summary, extra, meta={"data_range": "volume max"})
    back, back_extra = read_metrics_json(path)
    assert back_extra == extra
    assert list(back) == list(summary)
    assert back["teacher"] == summary["teacher"]
    assert back["perfect"]["psnr"][0] == math.inf and math.isnan(back["perfect"]["psnr"][1])
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file left


def test_per_slice_csv_round_trip(tmp_path: Path) -> None:
    rows = [
        {"volume": "vol1", "slice": 0, "model": "teacher", "psnr": 35.123456789012345, "ssim": 0.9},
        {"volume": "vol1", "slice": 1, "model": "teacher", "psnr": 34.0, "ssim": 0.91, "vif": 0.8},
        {"model": "student", "volume": "vol2", "slice": 0, "psnr": 30.0},
    ]
    path = tmp_path / "per_slice.csv"
    write_per_slice_csv(path, rows)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        back = list(reader)
    assert reader.fieldnames == ["volume", "slice", "model", "psnr", "ssim", "vif"]
    assert float(back[0]["psnr"]) == rows[0]["psnr"]  # full precision
    assert back[0]["vif"] == "" and back[2]["ssim"] == ""
    assert back[2]["model"] == "student" and int(back[1]["slice"]) == 1
    with pytest.raises(MrdistillError):
        write_per_slice_csv(tmp_path / "empty.csv", [])


def test_report_md(tmp_path: Path) -> None:
    table = markdown_table(summarise(PER_VOLUME))
    path = tmp_path / "report.md"
    write_report_md(path, "Knee 4x", table, ["data_range = volume max", "SSIM 7x7 uniform"])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Knee 4x\n\n| Model |")
    assert "## Notes\n\n- data_range = volume max\n- SSIM 7x7 uniform\n" in text
    write_report_md(path, "No notes", table, [])  # overwrites atomically
    assert "Notes" not in path.read_text(encoding="utf-8")
