"""GPU figures: training and inference throughput of the DC-CNN teacher (5 x 5) and student (5 x 3),
peak memory, and a short DDP run over the visible GPUs.

Usage (one prepared run on a CUDA machine):
    python benchmarks/gpu.py --size 320 --batch 8 --steps 20
Dry run of the same code on CPU (small, to check the script; not a figure):
    python benchmarks/gpu.py --device cpu --size 32 --batch 2 --steps 2 --no-ddp --out /tmp/gpu_dry

Per model and setting (fp32, bf16 autocast, channels_last fp32, channels_last bf16): training
slices/s (Adam steps through `train.precision.Precision`, so FFTs and DC stay float32), inference
slices/s (no_grad forward), peak memory (torch.cuda.max_memory_allocated). The DDP part launches
`torchrun --standalone --nproc_per_node <visible GPUs>` on this script (`--ddp-worker`): NCCL, every
rank trains on its own batch; reported: global slices/s. Without a GPU the script records
"no GPU available" and exits 0. Writes `<out>.json` and `<out>.md` (default benchmarks/results/gpu).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from mrdistill.machine import cpu_model
from mrdistill.models import build_model
from mrdistill.physics.fft import fft2c
from mrdistill.physics.masks import make_mask
from mrdistill.train.precision import Precision
from train_step import save_report  # benchmarks/ is the script folder: on sys.path

MODELS = {"teacher": 5, "student": 3}
SETTINGS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "channels_last": ("fp32", True),
            "channels_last+bf16": ("bf16", True)}


def make_batch(size: int, batch: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = F.avg_pool2d(torch.rand(batch, 1, size, size, generator=gen), 5, 1, 2)
    mask = torch.stack([make_mask("kdmri", (size, size), 4.0, seed=i) for i in range(batch)])
    return (fft2c(image.to(torch.complex64)) * mask).to(device), mask.to(device), image.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_for(convs: int, channels_last: bool, device: torch.device) -> nn.Module:
    model = build_model("dccnn", cascades=5, convs=convs, channels=32, in_channels=1, seed=0).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def train_throughput(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], precision: str,
                     steps: int, device: torch.device) -> float:
    """Training slices/s over `steps` Adam steps (after 2 warm-up steps)."""
    kspace, mask, target = batch
    amp = Precision(precision, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = list(model.parameters())

    def step() -> None:
        with amp.autocast():
            loss = F.l1_loss(model(kspace, mask).image, target)
        opt.zero_grad(set_to_none=True)
        amp.backward(loss)
        amp.step(opt, params, None)

    for _ in range(2):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * kspace.shape[0] / (time.perf_counter() - start)


@torch.no_grad()
def infer_throughput(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], precision: str,
                     steps: int, device: torch.device) -> float:
    kspace, mask, _ = batch
    model.eval()
    amp = Precision(precision, device)
    with amp.autocast():
        model(kspace, mask)
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model(kspace, mask)
        sync(device)
    return steps * kspace.shape[0] / (time.perf_counter() - start)


def single_device(args: argparse.Namespace, device: torch.device) -> dict:
    batch = make_batch(args.size, args.batch, device)
    out: dict[str, dict] = {}
    for name, convs in MODELS.items():
        for setting, (precision, channels_last) in SETTINGS.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            model = model_for(convs, channels_last, device)
            row = {"train_slices_per_s": train_throughput(model, batch, precision, args.steps, device),
                   "infer_slices_per_s": infer_throughput(model, batch, precision, args.steps, device)}
            if device.type == "cuda":
                row["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
            out[f"{name}/{setting}"] = row
            print(name, setting, row, flush=True)
    return out


def ddp_worker(args: argparse.Namespace) -> None:
    """One rank of the DDP run (launched by `ddp_run` through torchrun)."""
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl")
    device = torch.device("cuda", local_rank)
    results = {}
    for name, convs in MODELS.items():
        model = DistributedDataParallel(model_for(convs, False, device), device_ids=[local_rank])
        rate = train_throughput(model, make_batch(args.size, args.batch, device), "bf16",
                                args.steps, device)
        total = torch.tensor([rate], device=device)
        dist.all_reduce(total)
        results[name] = {"global_train_slices_per_s": float(total), "world_size": dist.get_world_size(),
                         "per_rank_batch": args.batch, "precision": "bf16"}
    if dist.get_rank() == 0:
        Path(args.ddp_out).write_text(json.dumps(results))
    dist.destroy_process_group()


def ddp_run(args: argparse.Namespace) -> dict:
    """Launch the DDP part on every visible GPU and read rank 0's figures."""
    out = Path(args.out).with_suffix(".ddp.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={torch.cuda.device_count()}", __file__, "--ddp-worker",
           "--ddp-out", str(out), "--size", str(args.size), "--batch", str(args.batch),
           "--steps", str(args.steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.ddp_timeout)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(out.read_text())


def render(report: dict) -> str:
    lines = [f"# GPU figures ({report['device']})", "", f"Command: `{report['command']}`", ""]
    if "note" in report:
        return "\n".join(lines + [report["note"], ""])
    lines += ["| model/setting | train slices/s | inference slices/s | peak memory MiB |",
              "|---|---|---|---|"]
    for key, r in report["single"].items():
        lines.append(f"| {key} | {r['train_slices_per_s']:.1f} | {r['infer_slices_per_s']:.1f} | "
                     f"{r.get('peak_memory_mib', float('nan')):.0f} |")
    if report.get("ddp"):
        lines += ["", f"DDP: `{json.dumps(report['ddp'])}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-ddp", action="store_true")
    ap.add_argument("--ddp-timeout", type=float, default=300)
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ddp-out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="benchmarks/results/gpu")
    args = ap.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args)
        return
    device = torch.device(args.device)
    report: dict = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                    "cpu": cpu_model(), "torch": torch.__version__, "size": args.size,
                    "batch": args.batch, "steps": args.steps}
    if device.type == "cuda" and not torch.cuda.is_available():
        report |= {"device": "none", "note": "no GPU available"}
    else:
        report["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
        report["single"] = single_device(args, device)
        if device.type == "cuda" and not args.no_ddp:
            report["ddp"] = ddp_run(args)
    save_report(Path(args.out), report, render(report))


if __name__ == "__main__":
    main()
