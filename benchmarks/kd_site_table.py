"""Summarise `kd_recipe.py` JSONL rows into the site-setting table of docs/results.md.

Usage: python benchmarks/kd_site_table.py benchmarks/results/kd_site.jsonl [--out FILE.md]
Per student size and arm: test PSNR/SSIM mean and sd over seeds, the gain over the plain student of
the same seed (mean, sd, and gain / sd), and the share of the plain student's gap to the teacher
that the arm recovers. Rows of one size must share the teacher (one `teacher_seed`).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def table(rows: list[dict]) -> str:
    by = defaultdict(dict)  # (site, student, plain student's steps) -> {(model, seed): row}
    for r in rows:
        by[(r.get("site", "shared"), r["student"], r["epochs"] * -(-r.get("labeled", r["train"]) // r["batch"]))][(r["model"], r["seed"])] = r
    out = ["| site | student | steps | params | arm | seeds | PSNR (dB) | SSIM | gain (dB) mean ± sd | gain / sd "
           "| share of the gap | teacher PSNR |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (site, student, steps), runs in sorted(by.items()):
        teacher = statistics.fmean(r["psnr"] for (m, _), r in runs.items() if m == "teacher")
        plain = {s: r for (m, s), r in runs.items() if m == "student"}
        arms = sorted({m for m, _ in runs} - {"teacher", "zero-filled"}, key=lambda m: (m != "student", m))
        for arm in arms:
            rs = {s: r for (m, s), r in runs.items() if m == arm}
            p, ss = mean_sd([r["psnr"] for r in rs.values()]), mean_sd([r["ssim"] for r in rs.values()])
            line = [site, student, str(steps), f"{next(iter(rs.values()))['params']:,}",
                    "plain" if arm == "student" else arm, ",".join(str(s) for s in sorted(rs)),
                    f"{p[0]:.2f} ± {p[1]:.2f}", f"{ss[0]:.4f} ± {ss[1]:.4f}"]
            if arm == "student":
                line += ["-", "-", "-"]
            else:
                gains = [rs[s]["psnr"] - plain[s]["psnr"] for s in rs if s in plain]
                g = mean_sd(gains)
                gap = statistics.fmean(teacher - plain[s]["psnr"] for s in rs if s in plain)
                ratio = f"{g[0] / g[1]:.1f}" if g[1] > 0 else "-"
                line += [f"{g[0]:+.2f} ± {g[1]:.2f} (n={len(gains)})", ratio, f"{g[0] / gap:.0%} of {gap:.2f} dB"]
            out.append("| " + " | ".join(line + [f"{teacher:.2f}"]) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = [json.loads(line) for p in args.logs for line in Path(p).read_text().splitlines() if line.strip()]
    text = table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
