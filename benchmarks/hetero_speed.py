"""Teacher vs student inference time per image on CPU (1 thread): the CNN student must be >= 5x
faster than the transformer teacher.

The models are the ones of the recorded table: the teachers of configs/hetero_teacher.yaml (x2) and
configs/hetero_teacher_x4.yaml (x4), the student of configs/hetero_kd.yaml; KD-MRI's VDSR pair
(11 vs 7 layers) for reference. Batch 1, untrained weights (timing does not depend on them), every
pair timed interleaved in one process so machine load hits both alike; medians of --reps runs.

Usage: python benchmarks/hetero_speed.py [--sizes 64,128] [--reps 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from mrdistill.machine import cpu_model as machine
from mrdistill.config import load_run_config
from mrdistill.models import build_model, count_parameters

ROOT = Path(__file__).resolve().parents[1]




def pairs(scale: int) -> dict[str, tuple[nn.Module, nn.Module]]:
    """name -> (teacher, student) at `scale`, built from the configs."""
    teacher_yaml = "hetero_teacher.yaml" if scale == 2 else "hetero_teacher_x4.yaml"
    t = load_run_config(ROOT / "configs" / teacher_yaml, [f"model.kwargs.scale={scale}"])
    s = load_run_config(ROOT / "configs" / "hetero_kd.yaml", [f"model.kwargs.scale={scale}"])
    return {
        "swinir -> chpnet": (build_model(t.model.name, seed=0, **t.model.kwargs),
                             build_model(s.model.name, seed=0, **s.model.kwargs)),
        "vdsr11 -> vdsr7": (build_model("vdsr", seed=0, layers=11, scale=scale),
                            build_model("vdsr", seed=0, layers=7, scale=scale)),
    }


@torch.no_grad()
def seconds(model: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x, None)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,128", help="high-res image sizes (pixels)")
    ap.add_argument("--scales", default="2,4")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hetero_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    load_start = os.getloadavg()[0]
    for scale in [int(s) for s in args.scales.split(",")]:
        for name, (teacher, student) in pairs(scale).items():
            teacher.eval()
            student.eval()
            for size in [int(s) for s in args.sizes.split(",")]:
                x = torch.rand(1, 1, size // scale, size // scale)
                for _ in range(2):  # warm-up
                    seconds(teacher, x), seconds(student, x)
                t_times, s_times = [], []
                for _ in range(args.reps):
                    t_times.append(seconds(teacher, x))
                    s_times.append(seconds(student, x))
                t_ms, s_ms = 1000 * statistics.median(t_times), 1000 * statistics.median(s_times)
                rows.append({"pair": name, "scale": scale, "size": size,
                             "teacher_params": count_parameters(teacher),
                             "student_params": count_parameters(student),
                             "teacher_ms": round(t_ms, 2), "student_ms": round(s_ms, 2),
                             "speedup": round(t_ms / s_ms, 2)})
                print(json.dumps(rows[-1]), flush=True)
    result = {"command": "python benchmarks/hetero_speed.py " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
              "machine": machine(), "threads": args.threads, "torch": torch.__version__,
              "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
              "batch": 1, "reps": args.reps, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("\n| pair | scale | image | teacher params | student params | teacher ms | student ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pair']} | x{r['scale']} | {r['size']} px | {r['teacher_params']:,} | "
              f"{r['student_params']:,} | {r['teacher_ms']:.1f} | {r['student_ms']:.1f} | "
              f"{r['speedup']:.1f}x |")


if __name__ == "__main__":
    main()
