"""`mrdistill demo`: teacher, student and distilled student on embedded real MRI."""

from __future__ import annotations

import argparse

from mrdistill.cli.common import add_device_arg, add_resume_arg
from mrdistill.demo import PRESETS, run_demo


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole story on embedded real data, one table",
                       description=__doc__)
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                   help="smoke: < 1 min; quick: what `make demo` runs on a CPU; full: paper recipe")
    p.add_argument("--acceleration", type=float, default=4.0, help="undersampling factor (> 1)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--seed", type=int, default=42)
    add_device_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_resume_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="data.KEY=VALUE",
                   help="change the preset's data config, e.g. data.augment.enabled=true "
                        "(repeatable; values parsed as YAML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.preset, args.out, args.acceleration, args.seed, args.device,
                      overwrite=args.overwrite, progress=not args.no_progress, resume=args.resume,
                      data_overrides=args.overrides)
    print(result.table)
    print(f"\nreport: {result.out / 'report.md'}  figures: {result.out / 'figures'}  "
          f"({result.seconds:.0f} s)")
    return 0
