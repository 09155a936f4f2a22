"""`mrdistill demo`: teacher, student and distilled student on embedded real MRI."""

from __future__ import annotations

import argparse

from mrdistill.demo import run_demo


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.preset, args.out, args.acceleration, args.seed, args.device,
                      overwrite=args.overwrite, progress=not args.no_progress, resume=args.resume,
                      data_overrides=args.overrides)
    print(result.table)
    print(f"\nreport: {result.out / 'report.md'}  figures: {result.out / 'figures'}  "
          f"({result.seconds:.0f} s)")
    return 0
