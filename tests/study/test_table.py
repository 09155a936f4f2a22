"""The study's per-acceleration table: classical baseline rows of multi-coil data get their own line."""

from __future__ import annotations

from mrdistill.study.table import acceleration_table


def _row(label: str, teacher: str, psnr: float) -> dict:
    return {"acceleration": 4.0, "row": label, "teacher": teacher, "seed": "", "psnr": psnr}


def test_baseline_rows_are_listed_after_zero_filled_and_not_mixed_into_it():
    rows = [_row("ZF", "-", 20.0), _row("CG-SENSE", "-", 24.0), _row("Teacher", "std", 30.0),
            _row("Student", "-", 27.0), _row("AT", "std", 28.0), _row("AT", "sft", 28.5)]
    table = acceleration_table(rows, 4.0, ["AT"], ["psnr"])
    lines = [ln.split("|")[1].strip() for ln in table.splitlines()[2:]]
    assert lines == ["ZF", "CG-SENSE", "Teacher", "Student", "AT"]
    assert "| ZF | 20.00 |" in table and "| CG-SENSE | 24.00 |" in table
