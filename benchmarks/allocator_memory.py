"""Peak memory and speed of training with glibc's default malloc vs freed memory kept
(`mrdistill.accel.allocator.retain_freed_memory`, what the `mrdistill` program does), on a stream of
batches whose image width changes from step to step, as fastMRI volumes' widths do.

Usage: python benchmarks/allocator_memory.py --steps 72 --batch 2 --threads 2

Each mode trains the DC-CNN student (5 cascades x 3 convs, 32 channels, complex input) from the same
seed on the same batches (height 320, widths cycling through WIDTHS) in its own child process, one
after the other; reported: peak resident memory after every `--every` steps, seconds, minor page
faults, and a hash of the trained weights (equal in both modes: only where the bytes live changes).
Writes `<out>.json`/`.md` (default benchmarks/results/allocator_memory.*).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from mrdistill.machine import cpu_model
from train_step import command_line, save_report

WIDTHS = (368, 372, 320, 384, 356, 396)

_CHILD = """
import hashlib, json, os, resource, sys, time, torch
import torch.nn.functional as F
from mrdistill.accel.allocator import retain_freed_memory
from mrdistill.models import build_model
mode, steps, batch, threads, every = sys.argv[1], *map(int, sys.argv[2:6])
widths = [int(w) for w in sys.argv[6].split(",")]
torch.set_num_threads(threads)
set_ = retain_freed_memory() if mode == "retained" else False
model = build_model("dccnn", cascades=5, convs=3, channels=32, in_channels=2, seed=0)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
gen = torch.Generator().manual_seed(0)
usage = lambda: resource.getrusage(resource.RUSAGE_SELF)
peaks, start, faults = [], time.perf_counter(), usage().ru_minflt
for step in range(steps):
    w = widths[step % len(widths)]
    image = torch.rand(batch, 1, 320, w, generator=gen)
    mask = (torch.rand(batch, 1, 1, w, generator=gen) < 0.3).float()
    kspace = torch.fft.fft2(image.to(torch.complex64), norm="ortho") * mask
    opt.zero_grad()
    target = torch.cat([image, torch.zeros_like(image)], 1)  # real and imaginary channels
    F.l1_loss(model(kspace, mask).image, target).backward()
    opt.step()
    if (step + 1) % every == 0:
        peaks.append(round(usage().ru_maxrss / 1024))
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
print(json.dumps({"setting_made": set_, "seconds": time.perf_counter() - start,
                  "minor_faults": usage().ru_minflt - faults, "peak_rss_mib": peaks,
                  "weights_sha256": digest}))
"""


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    """Train in a child process (the allocator setting is process-wide) and return its figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(args.steps), str(args.batch),
                           str(args.threads), str(args.every), ",".join(map(str, WIDTHS))],
                          capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=72)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--every", type=int, default=12)
    ap.add_argument("--out", default="benchmarks/results/allocator_memory")
    args = ap.parse_args(argv)
    load_start = [round(v, 1) for v in os.getloadavg()]
    results = {mode: run_mode(mode, args) for mode in ("default", "retained")}
    report = {"command": command_line(), **vars(args), "widths": WIDTHS,
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_start": load_start,
                          "loadavg_end": [round(v, 1) for v in os.getloadavg()]},
              "results": results}
    lines = [f"# Training memory: default malloc vs freed memory kept (student, B{args.batch}, "
             f"320 x {'/'.join(map(str, WIDTHS))})", "", f"Command: `{report['command']}`  ",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, threads "
             f"{args.threads}, load average at start {load_start}", "",
             f"| malloc | seconds | minor page faults | peak RSS MiB after every {args.every} steps "
             "| weights sha256 |", "|---|---|---|---|---|"]
    lines += [f"| {mode} | {r['seconds']:.1f} | {r['minor_faults']} | "
              f"{', '.join(map(str, r['peak_rss_mib']))} | {r['weights_sha256'][:16]} |"
              for mode, r in results.items()]
    save_report(Path(args.out), report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
