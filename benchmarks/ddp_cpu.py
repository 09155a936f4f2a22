"""DDP on CPU: `mrdistill train` in one process (batch 2b, `--threads` threads) vs under torchrun with
2 gloo ranks (batch b each, `--threads / 2` threads each), the same global batch and steps.

Usage: python benchmarks/ddp_cpu.py --size 64 --slices 16 --batch 2 --rounds 2 --threads 2

The two runs alternate for `--rounds` rounds (so background load hits both alike); reported per run
kind: median wall seconds of the whole command (process start, data, training, validation, test
report) and median training-epoch seconds from log.csv, and their ratios. Writes
`<out>.json` and `<out>.md` (default benchmarks/results/ddp_cpu.*).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mrdistill.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def config(path: Path, size: int, slices: int) -> Path:
    cfg = {"name": "ddp_bench", "seed": 0, "progress": False,
           "data": {"image_size": size, "max_train_slices": slices, "max_eval_slices": 4, "slab": 8},
           "model": {"name": "dccnn", "kwargs": {"cascades": 5, "convs": 5, "channels": 32}},
           # NCHW, as the recorded figures (benchmarks/README.md) were measured.
           "optim": {"epochs": 1, "channels_last": False}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(kind: str, cfg: Path, out: Path, batch: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # As in benchmarks/inference.py: idle OpenMP threads must sleep on a shared machine (spinning
    # threads of a 2-thread process crawl when the cores are busy).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = ["train", "--config", str(cfg), "--set", f"out_dir={out}", "--no-progress"]
    if kind == "1 process":
        env["OMP_NUM_THREADS"] = str(threads)
        cmd = [sys.executable, "-m", "mrdistill.cli.main", *args, "--set", f"optim.batch_size={2 * batch}"]
    else:
        env["OMP_NUM_THREADS"] = str(max(threads // 2, 1))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "mrdistill.cli.main", *args, "--set", f"optim.batch_size={batch}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    rows = list(csv.DictReader(open(out / "ddp_bench" / "log.csv")))
    return {"wall_s": wall, "epoch_s": float(rows[-1]["seconds"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2, help="per-rank batch b (one process: 2b)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/ddp_cpu")
    args = ap.parse_args()
    kinds = ["1 process", "torchrun 2 ranks"]
    load_start = [round(x, 1) for x in os.getloadavg()]
    times: dict[str, list[dict]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp) / "ddp.yaml", args.size, args.slices)
        for r in range(args.rounds):
            for kind in kinds[r % 2:] + kinds[:r % 2]:
                times[kind].append(run(kind, cfg, Path(tmp) / f"{r}{kind[0]}", args.batch, args.threads))
    summary = {k: {m: statistics.median(t[m] for t in ts) for m in ("wall_s", "epoch_s")}
               for k, ts in times.items()}
    report = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "cpu": cpu_model(),
              "cores": os.cpu_count(), "loadavg_start": load_start,
              "loadavg_end": [round(x, 1) for x in os.getloadavg()],
              "settings": vars(args), "rounds": times, "median": summary,
              "epoch_speedup_2_ranks": summary["1 process"]["epoch_s"] / summary["torchrun 2 ranks"]["epoch_s"]}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = [f"# DDP on CPU: 1 process vs torchrun 2 gloo ranks", "", f"Command: `{report['command']}`  ",
          f"Machine: {report['cpu']}, {report['cores']} cores, load average at start "
          f"{report['loadavg_start']}, at end {report['loadavg_end']}", "", "| run | median wall s | median epoch s |", "|---|---|---|"]
    md += [f"| {k} | {v['wall_s']:.1f} | {v['epoch_s']:.1f} |" for k, v in summary.items()]
    md += ["", "Per round (wall s / epoch s): " + "; ".join(
        f"{k}: " + ", ".join(f"{t['wall_s']:.1f}/{t['epoch_s']:.1f}" for t in ts) for k, ts in times.items())]
    md += ["", f"Epoch speed-up of 2 ranks over 1 process: {report['epoch_speedup_2_ranks']:.2f}x", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
