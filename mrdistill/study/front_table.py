"""The front's outputs as pure functions of result rows: one line per (size, variant) with the seed
mean and sd, `front.csv`, the Markdown table, the answer in words and the figure's series.

A seed row: {"student", "variant" ("plain", a recipe label, "teacher" or "zero-filled"), "seed",
"cell", and one value per metric (mean over test volumes)}.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrdistill.eval.report import DECIMALS, HEADERS, write_rows_csv

PLAIN = "plain"
TEACHER = "teacher"
ZERO_FILLED = "zero-filled"
NA = "n/a"
Line = dict[str, Any]


@dataclass
class SizeFacts:
    """One architecture's size and speed: parameters, GFLOPs per slice, p50 ms per slice by
    backend (None where the model has no such backend)."""

    params: int
    gflops: float
    ms: dict[str, float | None]


def _sd(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def aggregate(seed_rows: Sequence[Line], facts: dict[str, SizeFacts], metrics: Sequence[str]) -> list[Line]:
    """One line per (student, variant), in first-seen order: seeds, per metric its mean and sample
    sd over seeds (None for one seed), and the size's facts, FLOP ratio and speed-up per backend
    relative to the teacher (teacher value / student value)."""
    groups: dict[tuple[str, str], list[Line]] = {}
    for r in seed_rows:
        groups.setdefault((r["student"], r["variant"]), []).append(r)
    teacher = facts.get(TEACHER)
    lines = []
    for (student, variant), rows in groups.items():
        line: Line = {"student": student, "variant": variant,
                      "seeds": ";".join(str(r["seed"]) for r in rows if r["seed"] != "")}
        for m in metrics:
            vals = [float(r[m]) for r in rows]
            line[f"{m}_mean"], line[f"{m}_sd"] = statistics.fmean(vals), _sd(vals)
        f = facts.get(student)
        if f is not None:
            line.update(params=f.params, gflops=f.gflops,
                        flop_ratio=teacher.gflops / f.gflops if teacher and f.gflops else None)
            for b, ms in f.ms.items():
                line[f"ms_{b}"] = ms
                t = teacher.ms.get(b) if teacher else None
                line[f"speedup_{b}"] = t / ms if t is not None and ms else None
        lines.append(line)
    return lines


def write_front_csv(out: Path, seed_rows: Sequence[Line], lines: Sequence[Line],
                    backends: Sequence[str]) -> None:
    """front.csv (one line per size and variant; "n/a" where a model has no backend or a value
    is undefined) and front_seeds.csv (one line per trained model)."""
    keys = ["params", "gflops", "flop_ratio", *[f"{p}_{b}" for b in backends for p in ("ms", "speedup")]]
    rows = []
    for line in lines:
        row = dict(line)
        for k in keys:
            if row.get(k) is None and line["variant"] != ZERO_FILLED:
                row[k] = NA
        rows.append({k: (NA if v is None else v) for k, v in row.items()})
    write_rows_csv(out / "front.csv", rows)
    write_rows_csv(out / "front_seeds.csv", seed_rows)


def _f(value: float | None, digits: int) -> str:
    return NA if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def front_markdown(name: str, lines: Sequence[Line], metrics: Sequence[str], backends: Sequence[str],
                   answer: Sequence[str], notes: Sequence[str], gains: Sequence[str] = ()) -> str:
    """front.md: the answer, one table row per line (mean ± sd over seeds), then `gains` (the
    section of `gain_markdown`) and the notes."""
    head = ["student", "variant", "seeds",
            *[HEADERS.get(m, m) + " (mean ± sd)" for m in metrics], "params", "GFLOPs/slice",
            "FLOPs ÷", *[f"{b} ms/slice" for b in backends], *[f"{b} speed-up" for b in backends]]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ln in lines:
        cells = [ln["student"], ln["variant"], ln["seeds"] or "-"]
        for m in metrics:
            d = DECIMALS.get(m, 4)
            sd = ln[f"{m}_sd"]
            cells.append(_f(ln[f"{m}_mean"], d) + ("" if sd is None else f" ± {sd:.{d}f}"))
        if ln["variant"] == ZERO_FILLED:
            cells += ["-"] * (3 + 2 * len(backends))
        else:
            cells += [f"{ln.get('params', 0):,}", _f(ln.get("gflops"), 4), _f(ln.get("flop_ratio"), 1) + "x"]
            cells += [_f(ln.get(f"ms_{b}"), 2) for b in backends]
            cells += [_f(ln.get(f"speedup_{b}"), 2) + ("x" if ln.get(f"speedup_{b}") else "")
                      for b in backends]
        table.append("| " + " | ".join(cells) + " |")
    parts = [f"# Quality-speed front `{name}`", "", *answer, "", *table, "", *gains, "## Notes", "",
             *[f"- {n}" for n in notes], ""]
    return "\n".join(parts)


def answer_lines(lines: Sequence[Line], delta: float, variants: Sequence[str]) -> list[str]:
    """The answer in words: per variant (plain, each recipe) the smallest student (fewest FLOPs,
    then parameters) whose mean PSNR is within `delta` dB of the teacher's, with its speed-ups."""
    teacher = next(ln for ln in lines if ln["variant"] == TEACHER)
    floor = teacher["psnr_mean"] - delta
    out = [f"Smallest student within {delta:g} dB of the teacher ({teacher['psnr_mean']:.2f} dB), "
           f"by FLOPs:", ""]
    for v in variants:
        near = [ln for ln in lines if ln["variant"] == v and ln["psnr_mean"] >= floor]
        if not near:
            out.append(f"- {v}: none within {delta:g} dB")
            continue
        best = min(near, key=lambda ln: (ln["gflops"], ln["params"]))
        speed = ", ".join(f"{b.removeprefix('speedup_')} {best[b]:.2f}x" for b in best
                          if b.startswith("speedup_") and best[b] is not None)
        out.append(f"- {v}: {best['student']}, {best['psnr_mean']:.2f} dB "
                   f"({best['psnr_mean'] - teacher['psnr_mean']:+.2f} dB), "
                   f"{_f(best['flop_ratio'], 1)}x fewer FLOPs, speed-up over the teacher: {speed or NA}")
    return out


def gain_lines(seed_rows: Sequence[Line], variants: Sequence[str]) -> list[Line]:
    """What each recipe adds over the plain student of the same size, paired by seed.

    One line per (student, recipe) with at least one seed shared with its plain student: the
    per-seed PSNR gains (recipe - plain, dB), their mean and sample sd (None for one seed), the
    mean in sds (None without an sd), and the share of the plain student's mean gap to the teacher
    that the mean gain recovers (None when the plain student is not below the teacher).
    """
    psnr = {(r["student"], r["variant"], r["seed"]): float(r["psnr"]) for r in seed_rows}
    teacher = statistics.fmean(float(r["psnr"]) for r in seed_rows if r["variant"] == TEACHER)
    out = []
    students = list(dict.fromkeys(r["student"] for r in seed_rows if r["variant"] == PLAIN))
    for student in students:
        plain = {s: v for (st, var, s), v in psnr.items() if st == student and var == PLAIN}
        gap = teacher - statistics.fmean(plain.values())
        for v in variants:
            gains = [psnr[(student, v, s)] - p for s, p in plain.items() if (student, v, s) in psnr]
            if not gains:
                continue
            mean, sd = statistics.fmean(gains), _sd(gains)
            out.append({"student": student, "variant": v, "gains": gains, "gain_mean": mean,
                        "gain_sd": sd, "gain_in_sd": mean / sd if sd else None,
                        "gap": gap, "share_of_gap": mean / gap if gap > 0 else None})
    return out


def gain_markdown(gains: Sequence[Line]) -> list[str]:
    """front.md's section on what distillation adds: one row per size and recipe, and how many
    sizes each recipe lifts (mean gain > 0)."""
    if not gains:
        return []
    rows = ["## What distillation adds (paired by seed)", "",
            "| student | recipe | gain per seed (dB) | gain (mean ± sd) | mean / sd | plain's gap to the teacher | share of the gap |",
            "|---|---|---|---|---|---|---|"]
    for g in gains:
        sd = "" if g["gain_sd"] is None else f" ± {g['gain_sd']:.2f}"
        share = NA if g["share_of_gap"] is None else f"{100 * g['share_of_gap']:.0f} %"
        rows.append(f"| {g['student']} | {g['variant']} | {', '.join(f'{x:+.2f}' for x in g['gains'])} | "
                    f"{g['gain_mean']:+.2f}{sd} | {_f(g['gain_in_sd'], 1)} | {g['gap']:.2f} | {share} |")
    rows.append("")
    for v in dict.fromkeys(g["variant"] for g in gains):
        mine = [g for g in gains if g["variant"] == v]
        lifted = sum(g["gain_mean"] > 0 for g in mine)
        rows.append(f"- {v}: above the plain student at {lifted} of {len(mine)} sizes")
    return [*rows, ""]


def plot_series(lines: Sequence[Line]) -> tuple[dict[str, list[tuple[float | None, float, float, float]]],
                                                tuple[float | None, float, float], float | None]:
    """The figure's data: variant -> points (eager ms/slice, GFLOPs, PSNR mean, PSNR sd or 0)
    sorted by GFLOPs; the teacher's point; the zero-filled PSNR."""
    series: dict[str, list[tuple[float | None, float, float, float]]] = {}
    teacher: tuple[float | None, float, float] = (None, 0.0, 0.0)
    zero = None
    for ln in lines:
        if ln["variant"] == ZERO_FILLED:
            zero = ln["psnr_mean"]
        elif ln["variant"] == TEACHER:
            teacher = (ln.get("ms_eager"), ln["gflops"], ln["psnr_mean"])
        else:
            series.setdefault(ln["variant"], []).append(
                (ln.get("ms_eager"), ln["gflops"], ln["psnr_mean"], ln["psnr_sd"] or 0.0))
    return {k: sorted(v, key=lambda p: p[1]) for k, v in series.items()}, teacher, zero
