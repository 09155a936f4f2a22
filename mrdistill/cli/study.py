"""`mrdistill study`: KD methods x ordinary/student-friendly teachers x accelerations, one table.

Trained runs are cached by config hash under the study folder, so an interrupted study resumes and
a repeated one only re-evaluates.
"""

from __future__ import annotations

import argparse

from mrdistill.cli.common import split_out
from mrdistill.device import resolve_device
from mrdistill.study import load_study_config, run_study


def run(args: argparse.Namespace) -> int:
    cfg = load_study_config(args.config, args.preset, args.overrides)
    if args.no_progress:
        cfg.progress = False
    cfg.device = str(resolve_device(args.device or cfg.device))
    if args.out is not None:
        cfg.out_dir, cfg.name = split_out(args.out)
    result = run_study(cfg)
    print(result.markdown)
    print(f"report: {result.out / 'report.md'}  table: {result.out / 'study.csv'}  "
          f"figures: {result.out / 'figures'}")
    return 0
