"""`mrdistill benchmark` (arguments: `cli.parsers`): parameters, FLOPs, latency (p50/p95),
throughput, memory and achieved GFLOP/s of checkpoints, registered models and foreign models
(`--model NAME --weights FILE`) on several backends, measured in interleaved rounds; with two or
more models (teacher first), the speed-up of each over the first given, per backend. A backend a
model cannot run on (no export graph) shows "n/a (why)" in its row; the others are measured.
Prints a Markdown table and writes OUT/benchmark.json."""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from mrdistill.config import TeacherConfig, from_dict
from mrdistill.config.deploy import BenchSettings
from mrdistill.config.parse import apply_overrides
from mrdistill.deploy.benchmark import (BenchModel, built_model, check_settings, checkpoint_model, foreign_model,
                                        render_markdown, run_benchmark, write_report)
from mrdistill.errors import MrdistillError
from mrdistill.rundir import check_output_path, check_writable


def run(args: argparse.Namespace) -> int:
    specs = args.specs or []
    weights = [spec[3] for spec in specs if spec[0] == "model" and spec[3] is not None]
    check_output_path(args.out, [*args.checkpoint, *weights])  # before minutes of measuring, not after
    check_writable(args.out)
    settings = BenchSettings(shape=tuple(args.shape), batch=args.batch, device=args.device,
                             backends=[b.strip() for b in args.backends.split(",") if b.strip()],
                             repeats=args.repeats, matmul_size=args.matmul_size,
                             mask_kind=args.mask_kind, acceleration=args.acceleration, coils=args.coils)
    if args.threads is not None:
        if not 1 <= args.threads <= 1024:
            raise MrdistillError(f"--threads must be in 1..1024, got {args.threads}")
        torch.set_num_threads(args.threads)
    check_settings(settings)  # before loading anything: bad options cost nothing
    models: list[BenchModel] = []
    for kind, source, *rest in specs:  # command-line order: the first is the reference
        taken = [m.label for m in models]
        if kind == "checkpoint":
            models.append(checkpoint_model(source, taken))
            continue
        sets, weights_file, fmt = rest
        if weights_file is None:
            models.append(built_model(source, apply_overrides({}, sets), taken))
        else:
            spec = from_dict(TeacherConfig, {"model": source, "kwargs": apply_overrides({}, sets),
                                             "weights": weights_file, "format": fmt}, f"--model {source}")
            models.append(foreign_model(spec, taken))
    if not models:
        raise MrdistillError("nothing to measure: give --checkpoint FILE... or --model NAME")
    command = shlex.join(["mrdistill", *sys.argv[1:]]) if sys.argv[1:2] == ["benchmark"] else \
        "mrdistill benchmark (called in-process)"
    report = run_benchmark(models, settings, command, progress=not args.no_progress)
    print(render_markdown(report))
    print(f"wrote {write_report(report, args.out)}")
    return 0
