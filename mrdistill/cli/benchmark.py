"""`mrdistill benchmark`: parameters, FLOPs, latency (p50/p95), throughput, memory and achieved
GFLOP/s of models on several backends, measured in interleaved rounds; with two or more models
(teacher first), the speed-up of each over the first given, per backend. A backend a model
cannot run on (no export graph) shows "n/a (why)" in its row; the others are measured. Prints a
Markdown table and writes OUT/benchmark.json."""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from mrdistill.config.parse import apply_overrides
from mrdistill.deploy.backends import BACKENDS
from mrdistill.deploy.benchmark import (BenchModel, BenchSettings, built_model, check_settings, checkpoint_model,
                                        render_markdown, run_benchmark, write_report)
from mrdistill.errors import MrdistillError
from mrdistill.physics.masks import MASK_KINDS
from mrdistill.rundir import check_output_path, check_writable


class _ModelAction(argparse.Action):
    """Models in command-line order: --checkpoint FILE... adds one spec per file; --model NAME
    starts a spec; the --set options after it belong to it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        specs = getattr(namespace, "specs", None) or []
        if option_string == "--checkpoint":
            specs += [["checkpoint", path] for path in values]
            namespace.checkpoint = [*(getattr(namespace, "checkpoint", None) or []), *values]
        elif option_string == "--model":
            specs.append(["model", values, []])
        elif not specs or specs[-1][0] != "model":
            raise argparse.ArgumentError(self, "--set must follow a --model")
        else:
            specs[-1][2].append(values)
        namespace.specs = specs


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = BenchSettings(shape=(256, 256))
    p = sub.add_parser("benchmark", help="latency, throughput, memory per model and backend",
                       description=__doc__)
    p.add_argument("--checkpoint", nargs="+", action=_ModelAction, default=[],
                   help="checkpoints to measure; models keep command-line order (teacher first: speed-ups "
                        "are relative to the first model given)")
    p.add_argument("--model", action=_ModelAction, metavar="NAME",
                   help="a registered model built with seed 0 (repeatable; latency needs no training)")
    p.add_argument("--set", action=_ModelAction, metavar="KEY=VALUE",
                   help="an argument of the preceding --model, e.g. --set convs=3 (repeatable)")
    p.add_argument("--shape", nargs=2, type=int, metavar=("H", "W"), default=list(d.shape),
                   help=f"k-space grid (default {d.shape[0]} {d.shape[1]})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"slices per call (default {d.batch})")
    p.add_argument("--backends", default=",".join(d.backends),
                   help=f"comma-separated, of {', '.join(BACKENDS)} (default {','.join(d.backends)})")
    p.add_argument("--device", default=d.device, help="where eager and compile run (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=d.repeats, help=f"timed rounds (default {d.repeats})")
    p.add_argument("--matmul-size", type=int, default=d.matmul_size,
                   help=f"side of the fp32 peak matmul (default {d.matmul_size})")
    p.add_argument("--mask", dest="mask_kind", choices=MASK_KINDS, default=d.mask_kind,
                   help=f"mask kind of the input (default {d.mask_kind})")
    p.add_argument("--acceleration", type=float, default=d.acceleration,
                   help=f"undersampling factor (default {d.acceleration:g})")
    p.add_argument("--coils", type=int, default=d.coils,
                   help=f"simulated coils of the input k-space (default {d.coils}; e.g. 4 for a VarNet)")
    p.add_argument("--out", required=True, help="folder for benchmark.json")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run, specs=None)


def run(args: argparse.Namespace) -> int:
    check_output_path(args.out, args.checkpoint)  # before minutes of measuring, not after
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
    for kind, source, *sets in args.specs or []:
        taken = [m.label for m in models]
        models.append(checkpoint_model(source, taken) if kind == "checkpoint"
                      else built_model(source, apply_overrides({}, sets[0]), taken))
    if not models:
        raise MrdistillError("nothing to measure: give --checkpoint FILE... or --model NAME")
    command = shlex.join(["mrdistill", *sys.argv[1:]]) if sys.argv[1:2] == ["benchmark"] else \
        "mrdistill benchmark (called in-process)"
    report = run_benchmark(models, settings, command, progress=not args.no_progress)
    print(render_markdown(report))
    print(f"wrote {write_report(report, args.out)}")
    return 0
