"""Inference benchmark: DC-CNN teacher vs student, eager vs `optimise_for_inference`, on this CPU.

Usage: python benchmarks/inference.py --size 256 --batch 8 --repeats 7 --threads 2,1

For every thread count, one run measures in interleaved rounds (order rotated each round): the fp32
matmul peak (median of 3 square matmuls per round) and one batched forward of every model path.
Reported per path: slices/s and ms/slice (median over rounds; "best" = fastest round), FLOPs per slice
(`count_flops`: conv multiply-adds x 2, no bias/FFT/DC), achieved GFLOP/s, its fraction of the matmul
peak (median over rounds of the per-round ratio, so slow drifts of background load cancel), the
teacher/student speed ratio (median of per-round ratios) against the FLOP ratio, and peak memory.
Writes `<out>.md` and `<out>.json` (default benchmarks/results/inference.{md,json}).
"""

from __future__ import annotations

import os

# Must be set before torch loads OpenMP. With the default (spinning) wait policy, an OpenMP thread
# whose core is taken by another process stalls every parallel region: on a shared 2-core machine
# 2 threads then reach ~20 % of the matmul peak instead of ~70 %. Set it yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mrdistill.atomic import atomic_write_text  # noqa: E402
from mrdistill.deploy.backends import compiled_model  # noqa: E402
from mrdistill.deploy.benchmark import machine_info  # noqa: E402
from mrdistill.deploy.measure import (MEMORY_METHOD, matmul_peak, peak_rss_mib, per_round_ratio,  # noqa: E402
                                      seconds, summarise, timed_rounds)
from mrdistill.models import build_model, count_parameters  # noqa: E402
from mrdistill.accel import native  # noqa: E402
from mrdistill.accel.fast_inference import optimise_for_inference, tune_malloc_for_inference  # noqa: E402
from mrdistill.accel.fast_layers import TapConv  # noqa: E402
from mrdistill.models.flops import count_flops  # noqa: E402
from mrdistill.physics.fft import fft2c  # noqa: E402
from mrdistill.physics.masks import make_mask  # noqa: E402

MODELS = {"teacher": {"convs": 5}, "student": {"convs": 3}}
Forward = Callable[[Tensor, Tensor], object]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="image side H = W")
    ap.add_argument("--batch", type=int, default=8, help="slices per forward call")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds per thread count")
    ap.add_argument("--threads", default=str(os.cpu_count() or 1),
                    help="comma-separated intra-op thread counts, each measured separately")
    ap.add_argument("--matmul-size", type=int, default=2048, help="side of the peak matmul")
    ap.add_argument("--inductor", action="store_true",
                    help="also time torch.compile(model) (inductor, weight freezing; needs a C++ compiler)")
    ap.add_argument("--no-malloc-tuning", action="store_true",
                    help="keep glibc's default heap trimming (see tune_malloc_for_inference)")
    ap.add_argument("--out", default="benchmarks/results/inference", help="output path without suffix")
    return ap.parse_args(argv)


# ---------------------------------------------------------------- machine and inputs


def make_batch(size: int, batch: int) -> tuple[Tensor, Tensor]:
    """Smooth random images -> masked k-space complex64 (N, 1, H, W) and per-slice KD-MRI 4x masks
    float (N, 1, 1, W). Uses a local generator: global RNG is left alone."""
    gen = torch.Generator().manual_seed(0)
    image = torch.nn.functional.avg_pool2d(torch.rand(batch, 1, size, size, generator=gen), 5, 1, 2)
    mask = torch.stack([make_mask("kdmri", (size, size), 4.0, seed=i) for i in range(batch)])
    return fft2c(image.to(torch.complex64)) * mask, mask


# ---------------------------------------------------------------- measurements


def build_paths(kspace: Tensor, mask: Tensor, inductor: bool) -> tuple[dict[str, Forward], dict]:
    """'<model>/<path>' -> forward; plus per model facts (parameters, FLOPs, fast path, setup time)."""
    paths: dict[str, Forward] = {}
    facts: dict = {}
    for name, kwargs in MODELS.items():
        model = build_model("dccnn", seed=0, **kwargs).eval()
        start = time.perf_counter()
        fast = optimise_for_inference(model, kspace, mask)
        setup = time.perf_counter() - start
        facts[name] = {"parameters": count_parameters(model),
                       "flops_per_slice": count_flops(model, kspace[:1], mask[:1]),
                       "fast_path": getattr(fast, "description", type(fast).__name__),
                       "optimise_seconds": setup}
        paths[f"{name}/eager"] = _no_grad(model)
        paths[f"{name}/fast"] = fast
        if native.cascade_kernel() is not None and native.tapconv_kernel() is not None:
            # Conv by conv (oneDNN + the compiled AVX2 last conv): what AVX2-only machines get.
            layered = optimise_for_inference(model, kspace, mask, native=False)
            for layer in layered.modules():
                if isinstance(layer, TapConv):
                    layer.use_native = True
            paths[f"{name}/fast-layers"] = layered
        if native.tapconv_kernel() is not None or native.cascade_kernel() is not None:
            # Without compiled kernels: what machines without a C compiler get.
            paths[f"{name}/fast-torch"] = optimise_for_inference(model, kspace, mask, native=False)
        if inductor:
            paths[f"{name}/inductor"] = _compiled(model, kspace, mask, facts[name])
    return paths, facts


def _no_grad(model: nn.Module) -> Forward:
    """The eager model as an inference call (no autograd graph, like any fair CPU baseline)."""
    def forward(kspace: Tensor, mask: Tensor) -> object:
        with torch.no_grad():
            return model(kspace, mask)
    return forward


def _compiled(model: nn.Module, kspace: Tensor, mask: Tensor, facts: dict) -> Forward:
    """`compiled_model` (inductor, frozen weights) of the eager model; compile time goes into `facts`."""
    forward = _no_grad(compiled_model(model))
    facts["inductor_compile_seconds"] = seconds(lambda: forward(kspace, mask))
    return forward


def max_relative_error(paths: dict[str, Forward], kspace: Tensor, mask: Tensor) -> dict[str, float]:
    """max |path - eager| / max |eager| for every non-eager path, on the benchmark batch."""
    errors = {}
    for key, forward in paths.items():
        name, kind = key.split("/")
        if kind != "eager":
            ref = paths[f"{name}/eager"](kspace, mask).image
            errors[key] = float((forward(kspace, mask).image - ref).abs().max() / ref.abs().max())
    return errors


def measure(threads: int, args: argparse.Namespace) -> dict:
    """Everything for one thread count."""
    torch.set_num_threads(threads)
    kspace, mask = make_batch(args.size, args.batch)
    paths, facts = build_paths(kspace, mask, args.inductor)
    errors = max_relative_error(paths, kspace, mask)  # also the warm-up call of every path
    memory = {key: peak_rss_mib(lambda f=forward: f(kspace, mask)) for key, forward in paths.items()}
    # One timing loop for all benchmarks (mrdistill.deploy.measure): interleaved, rotated rounds.
    jobs: dict[str, Callable[[], float]] = {"peak": matmul_peak(args.matmul_size)}
    jobs.update({key: (lambda f=forward: seconds(lambda: f(kspace, mask))) for key, forward in paths.items()})
    times = timed_rounds(jobs, args.repeats)
    peaks = times.pop("peak")
    rows = {key: summarise(times[key], peaks, facts[key.split("/")[0]]["flops_per_slice"], args.batch)
            | {"memory": memory[key], "max_rel_error_vs_eager": errors.get(key, 0.0)} for key in paths}
    kinds = sorted({key.split("/")[1] for key in paths})
    speedup = {kind: per_round_ratio(times[f"teacher/{kind}"], times[f"student/{kind}"]) for kind in kinds}
    return {"threads": threads, "matmul_peak_gflops": {"median": statistics.median(peaks),
                                                       "rounds": peaks},
            "models": facts, "paths": rows, "teacher_student_speed_ratio": speedup,
            "flop_ratio": facts["teacher"]["flops_per_slice"] / facts["student"]["flops_per_slice"]}


def render_markdown(report: dict) -> str:
    """The results as Markdown: machine, command, then one table per thread count."""
    m = report["machine"]
    lines = ["# Inference benchmark (DC-CNN teacher vs student)", "",
             f"- command: `{report['command']}`",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, torch {m['torch']}, "
             f"env {m['env']}, glibc heap trimming off (tune_malloc_for_inference): {m['malloc_tuned']}",
             f"- load average at start / end: {_load(m['loadavg_start'])} / {_load(m['loadavg_end'])} "
             "(other jobs share these cores: timings are medians of interleaved rounds)",
             f"- input: {report['settings']['batch']} slices of {report['settings']['size']}^2 per call, "
             f"{report['settings']['repeats']} rounds; FLOPs = conv multiply-adds x 2 "
             "(`count_flops`; no bias/FFT/DC)",
             f"- memory: {MEMORY_METHOD}", ""]
    for run in report["runs"]:
        lines += _run_table(run)
    return "\n".join(lines) + "\n"


def _load(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _run_table(run: dict) -> list[str]:
    """Table and ratios of one thread count."""
    peak = run["matmul_peak_gflops"]["median"]
    lines = [f"## {run['threads']} thread(s): fp32 matmul peak {peak:.0f} GFLOP/s", "",
             "| model | path | slices/s | best slices/s | ms/slice | GFLOP/slice | GFLOP/s | of peak "
             "| peak RSS MiB (delta) | max rel. err |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, row in run["paths"].items():
        name, kind = key.split("/")
        mem = row["memory"]
        delta = "" if mem["delta_mib"] is None else f" ({round(mem['delta_mib']):+d})"
        lines.append(f"| {name} | {kind} | {row['slices_per_s']:.2f} | {row['best_slices_per_s']:.2f} "
                     f"| {row['ms_per_slice']:.1f} | {row['gflops_per_slice']:.2f} "
                     f"| {row['achieved_gflops']:.0f}"
                     f" | {100 * row['fraction_of_peak']:.0f}% | {mem['peak_mib']:.0f}{delta} "
                     f"| {row['max_rel_error_vs_eager']:.1e} |")
    ratios = ", ".join(f"{kind} {value:.2f}x" for kind, value in run["teacher_student_speed_ratio"].items())
    lines += ["", f"Teacher/student speed ratio (slices/s): {ratios}; FLOP ratio {run['flop_ratio']:.2f}.",
              f"Fast path: {run['models']['teacher']['fast_path']}.", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    malloc_tuned = False if args.no_malloc_tuning else tune_malloc_for_inference()
    report = {"command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv),
              "machine": machine_info(), "memory_method": MEMORY_METHOD,
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "runs": []}
    for threads in [int(t) for t in args.threads.split(",")]:
        report["runs"].append(measure(threads, args))
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["machine"]["malloc_tuned"] = malloc_tuned
    markdown = render_markdown(report)
    print(markdown)
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".md"), markdown)
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
