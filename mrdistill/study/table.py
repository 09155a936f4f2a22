"""The study's outputs: SFT-KD-Recon-shaped tables (cells `Std-KD -> SFT-KD`), the teacher-student
gap, the seed spread, and `study.csv`. Pure functions of result rows.

A row is a dict: {"acceleration", "row" (ZF, Teacher, Student or a method label), "teacher"
("std", "sft" or "-"), "seed", "cell", and per metric its mean over test volumes and "<metric>_2sd"}.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mrdistill.eval.report import DECIMALS, HEADERS, write_rows_csv

Row = dict[str, Any]
_MISSING = "—"


def seed_mean(rows: Sequence[Row], acc: float, label: str, variant: str, metric: str) -> float | None:
    """Mean over seeds of one (acceleration, row, teacher) metric; None when absent."""
    vals = [r[metric] for r in rows
            if r["acceleration"] == acc and r["row"] == label and r["teacher"] == variant]
    return statistics.fmean(vals) if vals else None


def _fmt(value: float | None, metric: str) -> str:
    return _MISSING if value is None else f"{value:.{DECIMALS.get(metric, 4)}f}"


def acceleration_table(rows: Sequence[Row], acc: float, labels: Sequence[str],
                       metrics: Sequence[str]) -> str:
    """Markdown: rows ZF, the classical baselines (multi-coil data), Teacher, Student, methods;
    cells "Std-KD -> SFT-KD" (one value for ZF, the baselines and the student), each the mean over
    seeds of the volume-mean metric."""
    lines = ["| | " + " | ".join(HEADERS.get(m, m) for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    fixed = {"ZF", "Teacher", "Student", *labels}
    baselines = list(dict.fromkeys(r["row"] for r in rows if r["acceleration"] == acc
                                   and r["teacher"] == "-" and r["row"] not in fixed))
    for label in ["ZF", *baselines, "Teacher", "Student", *labels]:
        cells = []
        for m in metrics:
            if label in ("ZF", "Student", *baselines):
                cells.append(_fmt(seed_mean(rows, acc, label, "-", m), m))
            else:
                std, sft = (seed_mean(rows, acc, label, v, m) for v in ("std", "sft"))
                cells.append(f"{_fmt(std, m)} -> {_fmt(sft, m)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


Gap = tuple[float | None, float | None]


def gaps(rows: Sequence[Row], acc: float, labels: Sequence[str]) -> dict[str, Gap]:
    """PSNR gap in dB to the *ordinary* teacher, (Std-KD, SFT-KD) per method (and for the plain
    student as (gap, None)); a negative gap means the student beats that teacher."""
    teacher = seed_mean(rows, acc, "Teacher", "std", "psnr")
    out: dict[str, Gap] = {}
    if teacher is None:
        return out
    student = seed_mean(rows, acc, "Student", "-", "psnr")
    out["Student (no KD)"] = (None if student is None else teacher - student, None)
    for label in labels:
        std, sft = (seed_mean(rows, acc, label, v, "psnr") for v in ("std", "sft"))
        out[label] = (None if std is None else teacher - std, None if sft is None else teacher - sft)
    return out


def gap_table(rows: Sequence[Row], accs: Sequence[float], labels: Sequence[str]) -> str:
    """Markdown: gap Std-KD -> SFT-KD per method and acceleration, and the mean over methods."""
    header = "| | " + " | ".join(f"{a:g}x Std-KD -> SFT-KD" for a in accs) + " |"
    lines = [header, "|---|" + "---|" * len(accs)]
    per_acc = {a: gaps(rows, a, labels) for a in accs}
    names = ["Student (no KD)", *labels]
    for name in names:
        cells = []
        for a in accs:
            std, sft = per_acc[a].get(name, (None, None))
            cells.append(_fmt(std, "psnr") if name.startswith("Student")
                         else f"{_fmt(std, 'psnr')} -> {_fmt(sft, 'psnr')}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = []
    for a in accs:
        pairs = [per_acc[a][n] for n in labels if n in per_acc[a]]
        std = [p[0] for p in pairs if p[0] is not None]
        sft = [p[1] for p in pairs if p[1] is not None]
        means.append(f"{_fmt(statistics.fmean(std) if std else None, 'psnr')} -> "
                     f"{_fmt(statistics.fmean(sft) if sft else None, 'psnr')}")
    lines.append("| mean over methods | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def spread_table(rows: Sequence[Row]) -> str:
    """Markdown: test PSNR over seeds for every (acceleration, row, teacher) run with >= 2 seeds;
    empty string when there is none. sd is the sample sd over seeds."""
    groups: dict[tuple[float, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r["acceleration"], r["row"], r["teacher"]), []).append(r)
    lines = []
    for (acc, label, variant), items in groups.items():
        if len(items) < 2:
            continue
        vals = [r["psnr"] for r in items]
        seeds = ", ".join(str(r["seed"]) for r in items)
        lines.append(f"| {acc:g}x | {label} | {variant} | {seeds} | {statistics.fmean(vals):.2f} | "
                     f"{statistics.stdev(vals):.3f} | {min(vals):.2f} .. {max(vals):.2f} |")
    if not lines:
        return ""
    head = ["| acc | row | teacher | seeds | PSNR mean (dB) | sd over seeds | range |",
            "|---|---|---|---|---|---|---|"]
    return "\n".join(head + lines) + "\n"


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    """study.csv: one line per (acceleration, row, teacher, seed), full-precision floats."""
    write_rows_csv(path, rows)
