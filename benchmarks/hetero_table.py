"""Summarise benchmarks/results/hetero_sr.jsonl into the Markdown table of docs/results.md section 4.

Per scale and model: the mean over seeds of the test-set PSNR/SSIM/HFEN (each a mean over test
volumes) +- the standard deviation across seeds (the run-to-run spread; none for models trained
once), parameters and ms per image (batch 1, one thread, from benchmarks/results/hetero_speed.json
at the table's image size: timings taken during the training runs swing with the machine's load);
then the per-seed paired differences in PSNR (same seed = same
initialisation and batch order) of teacher correction against the frozen teacher and the student.

Usage: python benchmarks/hetero_table.py [--log benchmarks/results/hetero_sr.jsonl]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["bicubic", "teacher", "student", "distilled (frozen teacher)",
         "distilled (teacher correction)", "teacher after correction"]
SEEDED = {"student", "distilled (frozen teacher)", "distilled (teacher correction)",
          "teacher after correction"}


def cell(values: list[float], decimals: int, spread: bool) -> str:
    mean = f"{np.mean(values):.{decimals}f}"
    if not spread:
        return mean
    return f"{mean} ± {np.std(values, ddof=1):.{decimals}f}" if len(values) > 1 else mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", default=str(ROOT / "benchmarks" / "results" / "hetero_sr.jsonl"))
    ap.add_argument("--speed", default=str(ROOT / "benchmarks" / "results" / "hetero_speed.json"))
    args = ap.parse_args()
    speed = {(r["scale"], r["size"]): r for r in json.loads(Path(args.speed).read_text())["rows"]
             if r["pair"] == "swinir -> chpnet"}
    rows = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line.strip()]
    by: dict[tuple[int, str], dict[int, dict]] = defaultdict(dict)
    for r in rows:
        by[(r["scale"], r["model"])][r["seed"]] = r  # models trained once appear once per seed key
    for scale in sorted({r["scale"] for r in rows}):
        seeds = sorted(by[(scale, "student")])
        print(f"\n**x{scale}** (seeds {', '.join(map(str, seeds))}; ± = sd across seeds)\n")
        print("| model | PSNR (dB) | SSIM | HFEN | params | ms/image |")
        print("|---|---|---|---|---|---|")
        for model in ORDER:
            runs = list(by[(scale, model)].values())
            if not runs:
                continue
            spread = model in SEEDED
            metrics = [cell([r[m] for r in runs], d, spread)
                       for m, d in (("psnr", 2), ("ssim", 4), ("hfen", 4))]
            timing = speed[(scale, runs[0]["size"])]
            ms = timing["teacher_ms"] if model.startswith("teacher") else timing["student_ms"]
            params = f"{runs[0]['params']:,}" if runs[0]["params"] else "-"
            print(f"| {model} | {' | '.join(metrics)} | {params} | "
                  f"{'-' if not runs[0]['params'] else f'{ms:.1f}'} |")
        tc, frozen, student = (by[(scale, m)] for m in ("distilled (teacher correction)",
                                                       "distilled (frozen teacher)", "student"))
        for name, other in (("frozen teacher", frozen), ("student", student)):
            diffs = [tc[s]["psnr"] - other[s]["psnr"] for s in seeds if s in tc and s in other]
            print(f"\nteacher correction - {name}, PSNR per seed: "
                  f"{', '.join(f'{d:+.2f}' for d in diffs)} (mean {np.mean(diffs):+.2f} dB, "
                  f"sd {np.std(diffs, ddof=1):.2f})")
        spread = np.std([student[s]["psnr"] for s in seeds], ddof=1)
        print(f"run-to-run spread of the plain student: sd {spread:.2f} dB")


if __name__ == "__main__":
    main()
