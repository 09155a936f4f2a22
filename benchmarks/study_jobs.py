"""Wall time of the smoke study with its cells one after another (`--jobs 1`, in one process) and
two at a time (`--jobs 2`, worker processes with one torch thread each), each run in a fresh
folder (nothing cached), and whether both give the same table.

    python benchmarks/study_jobs.py [--preset smoke] [--out benchmarks/results/study_jobs]

Writes `<out>.md` and `<out>.json` (command, machine, load averages, times, the study's lines).
Every run is its own `mrdistill study` process, started from this repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrdistill.atomic import atomic_write_text  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402


def run(jobs: int, preset: str, folder: Path) -> dict:
    out = folder / f"jobs{jobs}"
    cmd = [sys.executable, "-m", "mrdistill.cli.main", "study", "--preset", preset, "--out", str(out),
           "--no-progress", "--jobs", str(jobs), "--set", "executor.threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    rows = list(csv.DictReader(open(out / "study.csv")))
    return {"jobs": jobs, "seconds": seconds, "loadavg_start": load, "loadavg_end": os.getloadavg(),
            "command": " ".join(cmd[1:]).replace(str(out), "<tmp>"),
            "psnr": {f"{r['acceleration']}/{r['row']}/{r['teacher']}/{r['seed']}": r["psnr"] for r in rows}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="smoke")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "study_jobs"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="study-jobs-") as tmp:
        results = [run(jobs, args.preset, Path(tmp)) for jobs in (1, 2)]
    same = results[0]["psnr"] == results[1]["psnr"]
    report = {"command": f"python benchmarks/study_jobs.py --preset {args.preset}",
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count()}, "runs": results,
              "same_table": same}
    lines = ["# Smoke study: `--jobs 1` against `--jobs 2`", "",
             f"- command: `{report['command']}` (each run: a fresh folder, one torch thread per cell)",
             f"- machine: {cpu_model()}, {os.cpu_count()} cores; the load averages show how busy it was",
             f"- same table (every PSNR in study.csv identical): {same}", "",
             "| jobs | wall s | load avg at start (1/5/15 min) | load avg at end |", "|---:|---:|---|---|"]
    for r in results:
        lines.append(f"| {r['jobs']} | {r['seconds']:.0f} | {' '.join(f'{v:.1f}' for v in r['loadavg_start'])} "
                     f"| {' '.join(f'{v:.1f}' for v in r['loadavg_end'])} |")
    lines += ["", f"Speed-up of `--jobs 2`: {results[0]['seconds'] / results[1]['seconds']:.2f}x.", ""]
    atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(Path(args.out).with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
