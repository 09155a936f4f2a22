"""Training-step benchmark: our DC-CNN teacher (5 cascades x 5 convs) and student (5 x 3) vs a plain
PyTorch DC-CNN written the way the seed papers' code writes it, same shapes, on this CPU.

Usage: python benchmarks/train_step.py --size 240 --batch 4 --repeats 7 --threads 2

One training step = zero_grad, forward, L1 loss against the target, backward, Adam step. Two
worker processes hold the paths: one with glibc's default malloc (how the seeds' scripts run) and
one that keeps freed memory (`mrdistill.accel.allocator.retain_freed_memory`, as the `mrdistill` program
runs). Every path is timed in the same interleaved rounds (order rotated each round; one process
works at a time), so background load hits all of them alike; reported: median seconds per step,
the minor page faults per step, each process's peak resident memory, and per round the ratio
baseline / path (median over rounds). Paths:

- `baseline`: `PlainDCCNN` below: nn.Sequential conv stacks, DC with torch.fft on the real image
  (uncentred, mask shifted once), NCHW, float32; default malloc;
- `baseline-retained`: the same with freed memory kept (what the allocator alone changes);
- `ours`: `mrdistill` `DCCNN` as `mrdistill train` runs it (eager, NCHW, float32, memory kept);
- `ours-channels_last`: with `optim.channels_last` as `train.loop.fit` runs it (`accel.native_conv`:
  each part of a conv by oneDNN or a compiled kernel, whichever is faster on this CPU);
- `ours-channels_last-onednn`: channels_last with autograd's own conv backward (oneDNN only);
- `ours-bf16`: `ours` under CPU bf16 autocast (`optim.precision: bf16`; DC stays float32);
- `ours-compiled` (with `--compile`): `torch.compile` of the model (inductor).

Also recorded: |loss difference| of every path against `baseline` on the first step (same weights).
A process's peak RSS covers every path it holds: compare it between runs with the same paths.
Writes `<out>.json` and `<out>.md` (default benchmarks/results/train_step.*).
"""

from __future__ import annotations

import os

# As in benchmarks/inference.py: idle OpenMP threads must sleep on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mrdistill.accel.allocator import retain_freed_memory  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402
from mrdistill.models import build_model  # noqa: E402
from mrdistill.accel.native_conv import kernel_preferred, native_weight_grad  # noqa: E402
from mrdistill.physics.fft import fft2c  # noqa: E402
from mrdistill.physics.masks import make_mask  # noqa: E402

SHAPES = {"teacher": 5, "student": 3}  # convs per cascade; 5 cascades, 32 channels, real images


class PlainDCCNN(nn.Module):
    """The baseline: 5 cascades of [conv 1->32, ReLU, (convs-2) x (conv 32->32, ReLU), conv 32->1],
    each followed by hard DC computed with torch.fft on the real image (k = fft2(x); keep k0 where
    sampled; x = real(ifft2(k))). Uncentred FFT with the mask and k-space shifted once outside."""

    def __init__(self, convs: int, cascades: int = 5, channels: int = 32) -> None:
        super().__init__()
        blocks = []
        for _ in range(cascades):
            layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(inplace=True)]
            for _ in range(convs - 2):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
            layers.append(nn.Conv2d(channels, 1, 3, padding=1))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, k0: Tensor, mask: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
            k = torch.fft.fft2(x, norm="ortho")
            k = mask * k0 + (1 - mask) * k
            x = torch.fft.ifft2(k, norm="ortho").real
        return x


def make_batch(size: int, batch: int) -> dict[str, Tensor]:
    """Smooth random images (the targets), per-slice KD-MRI 4x column masks, masked k-space."""
    gen = torch.Generator().manual_seed(0)
    image = F.avg_pool2d(torch.rand(batch, 1, size, size, generator=gen), 5, 1, 2)
    mask = torch.stack([make_mask("kdmri", (size, size), 4.0, seed=i) for i in range(batch)])
    kspace = fft2c(image.to(torch.complex64)) * mask
    shifted_mask = torch.fft.ifftshift(mask.expand(batch, 1, size, size), dim=(-2, -1))
    k0 = torch.fft.fft2(image, norm="ortho") * shifted_mask
    zero_filled = torch.fft.ifft2(k0, norm="ortho").real
    return {"target": image, "kspace": kspace, "mask": mask, "k0": k0, "shifted_mask": shifted_mask,
            "zero_filled": zero_filled}


def ours_from_baseline(base: PlainDCCNN, convs: int) -> nn.Module:
    """Our DCCNN holding the baseline's weights (same initial point for the loss comparison)."""
    ours = build_model("dccnn", cascades=5, convs=convs, channels=32, in_channels=1, seed=0)
    src = [m for m in base.modules() if isinstance(m, nn.Conv2d)]
    dst = [m for m in ours.modules() if isinstance(m, nn.Conv2d)]
    for a, b in zip(src, dst):
        b.load_state_dict(a.state_dict())
    return ours


Step = Callable[[], float]


def make_step(model: nn.Module, forward: Callable[[nn.Module], Tensor], target: Tensor,
              autocast: bool = False, native: bool = False) -> Step:
    """One Adam training step of `model`; returns the loss. `native`: inside
    `native_weight_grad(model)`, as `train.loop.fit` runs with `optim.channels_last`."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
        with ctx, native_weight_grad(model, enabled=native):
            loss = F.l1_loss(forward(model).float(), target)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


# The paths each worker process holds: glibc's default malloc, or freed memory kept.
DEFAULT_MALLOC = ("baseline",)
RETAINED = ("baseline-retained", "ours", "ours-channels_last", "ours-channels_last-onednn", "ours-bf16",
            "ours-compiled")


def build_paths(convs: int, batch: dict[str, Tensor], names: list[str]) -> dict[str, Step]:
    """The training steps `names` (see the module docstring), all from the same initial weights."""
    torch.manual_seed(0)  # a benchmark script (not library code) may seed the global RNG
    base = PlainDCCNN(convs)
    ours = ours_from_baseline(base, convs)
    t, k, m = batch["target"], batch["kspace"], batch["mask"]

    def run_ours(model: nn.Module) -> Tensor:
        return model(k, m).image

    def run_base(model: nn.Module) -> Tensor:
        return model(batch["zero_filled"], batch["k0"], batch["shifted_mask"])

    def channels_last() -> nn.Module:
        return copy.deepcopy(ours).to(memory_format=torch.channels_last)

    makers: dict[str, Callable[[], Step]] = {
        "baseline": lambda: make_step(base, run_base, t),
        "baseline-retained": lambda: make_step(base, run_base, t),
        "ours": lambda: make_step(ours, run_ours, t),
        "ours-channels_last": lambda: make_step(channels_last(), run_ours, t, native=True),
        "ours-channels_last-onednn": lambda: make_step(channels_last(), run_ours, t),
        "ours-bf16": lambda: make_step(copy.deepcopy(ours), run_ours, t, autocast=True),
        "ours-compiled": lambda: make_step(torch.compile(copy.deepcopy(ours)), run_ours, t),
    }
    return {name: makers[name]() for name in names}


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(conn: Connection, retain: bool, convs: int, size: int, batch_size: int, threads: int,
           names: list[str]) -> None:
    """One process's paths, run on request: ("first",) -> first-step losses; ("step", name) ->
    (seconds, minor page faults); ("profile", name) -> a torch.profiler table; ("memory",) -> (peak
    resident MiB, whether freed memory is kept); ("stop",)."""
    torch.set_num_threads(threads)
    kept = retain_freed_memory() if retain else False  # False too where the user tunes malloc
    paths = build_paths(convs, make_batch(size, batch_size), names)
    while True:
        request = conn.recv()
        if request[0] == "first":
            conn.send({name: step() for name, step in paths.items()})
        elif request[0] == "step":
            faults, start = _minor_faults(), time.perf_counter()
            paths[request[1]]()
            conn.send((time.perf_counter() - start, _minor_faults() - faults))
        elif request[0] == "profile":
            with torch.profiler.profile() as prof:
                paths[request[1]]()
            conn.send(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        elif request[0] == "memory":
            conn.send((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, kept))
        else:
            return


def timed_rounds(ask: Callable[[str, tuple], object], names: list[str], repeats: int
                 ) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """`repeats` interleaved rounds of one step per path (order rotated each round)."""
    times: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            seconds, count = ask(name, ("step", name))
            times[name].append(seconds)
            faults[name].append(count)
    return times, faults


def summarise(times: dict[str, list[float]], faults: dict[str, list[int]], first: dict[str, float],
              memory: dict[str, tuple[float, bool]]) -> dict[str, dict]:
    out = {}
    for name, ts in times.items():
        ratios = [b / t for b, t in zip(times["baseline"], ts)]
        row = {"median_s": statistics.median(ts), "best_s": min(ts),
               "speedup_vs_baseline": statistics.median(ratios),
               "minor_faults_per_step": statistics.median(faults[name]),
               "process_peak_rss_mib": memory[name][0], "freed_memory_kept": memory[name][1],
               "first_loss": first[name],
               "first_loss_diff_vs_baseline": abs(first[name] - first["baseline"])}
        if "baseline-retained" in times:
            row["speedup_vs_baseline_retained"] = statistics.median(
                b / t for b, t in zip(times["baseline-retained"], ts))
        out[name] = row
    return out


def render_markdown(report: dict) -> str:
    lines = [f"# Training step vs plain DC-CNN baseline (B{report['batch']}, {report['size']}^2)", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores, torch {report['machine']['torch']}, "
             f"threads {report['threads']}, load average at start {report['machine']['loadavg_start']}",
             "", "Speed-ups: median of per-round ratios. `baseline` runs with glibc's default malloc, "
             "every other path in a process that keeps freed memory.", "",
             "| model | path | median s/step | best s/step | speed-up vs baseline | vs baseline-retained "
             "| minor page faults/step | process peak RSS MiB | first-step loss diff vs baseline |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, rows in report["results"].items():
        for name, r in rows.items():
            same = r.get("speedup_vs_baseline_retained")
            lines.append(f"| {model} | {name} | {r['median_s']:.3f} | {r['best_s']:.3f} | "
                         f"{r['speedup_vs_baseline']:.2f}x | {'-' if same is None else f'{same:.2f}x'} | "
                         f"{r['minor_faults_per_step']:.0f} | {r['process_peak_rss_mib']:.0f} | "
                         f"{r['first_loss_diff_vs_baseline']:.1e} |")
    return "\n".join(lines) + "\n"


# Environment settings that change what is measured: shown in front of the recorded command.
MEASURED_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MRDISTILL_NATIVE", "OMP_NUM_THREADS")


def command_line() -> str:
    """This run's command as it can be typed again, with the settings of MEASURED_ENV in front."""
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in MEASURED_ENV if k in os.environ]
    return " ".join(env + ["python"] + [shlex.quote(a) for a in sys.argv])


def save_report(out: Path, report: dict, markdown: str) -> None:
    """`out`.json (the figures) and `out`.md (the table), and the table on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown)
    print(markdown)


def measure_model(convs: int, names: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """Start the two worker processes, time `names` in interleaved rounds, stop them."""
    ctx = mp.get_context("spawn")
    groups = {False: [n for n in names if n in DEFAULT_MALLOC], True: [n for n in names if n in RETAINED]}
    conns, procs = {}, []
    for retain, group in groups.items():
        if group:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, retain, convs, args.size, args.batch,
                                                    args.threads, group))
            proc.start()
            procs.append(proc)
            conns.update({name: parent for name in group})

    def ask(name: str, request: tuple) -> object:
        conns[name].send(request)
        return conns[name].recv()

    try:
        first: dict[str, float] = {}
        for conn in {id(c): c for c in conns.values()}.values():
            conn.send(("first",))
            first.update(conn.recv())
        times, faults = timed_rounds(ask, names, args.repeats)
        if args.profile:
            for name in names:
                print(f"== {name}\n" + ask(name, ("profile", name)))
        memory = {name: ask(name, ("memory",)) for name in names}
    finally:
        for conn in {id(c): c for c in conns.values()}.values():
            conn.send(("stop",))
        for proc in procs:
            proc.join()
    return summarise(times, faults, first, memory)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=240)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--models", default="teacher,student")
    ap.add_argument("--paths", default="baseline,baseline-retained,ours,ours-channels_last",
                    help="comma-separated paths to time (baseline is always timed)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor)")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table per path")
    ap.add_argument("--out", default="benchmarks/results/train_step")
    args = ap.parse_args(argv)
    wanted = ["baseline"] + [p for p in args.paths.split(",") if p != "baseline"]
    wanted += ["ours-compiled"] if args.compile else []
    unknown = sorted(set(wanted) - set(DEFAULT_MALLOC) - set(RETAINED))
    if unknown:
        ap.error(f"unknown paths: {', '.join(unknown)}")
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "kernel_preferred": kernel_preferred(),
               "platform": platform.platform(), "loadavg_start": [round(x, 1) for x in os.getloadavg()]}
    results = {}
    for model in args.models.split(","):
        results[model] = measure_model(SHAPES[model], wanted, args)
        print(json.dumps({model: results[model]}, indent=1), flush=True)
    report = {"command": command_line(), "size": args.size,
              "batch": args.batch, "threads": args.threads, "repeats": args.repeats,
              "machine": machine | {"loadavg_end": [round(x, 1) for x in os.getloadavg()]},
              "results": results}
    save_report(Path(args.out), report, render_markdown(report))


if __name__ == "__main__":
    main()
