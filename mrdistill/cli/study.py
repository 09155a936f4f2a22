"""`mrdistill study`: KD methods x ordinary/student-friendly teachers x accelerations, one table.

Trained runs are cached by config hash under the study folder, so an interrupted study resumes and
a repeated one only re-evaluates.
"""

from __future__ import annotations

import argparse

from mrdistill.cli.common import add_device_arg
from mrdistill.device import resolve_device
from mrdistill.cli.common import add_out_arg, split_out
from mrdistill.study import PRESETS, load_study_config, run_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="KD methods x Std/SFT teachers x accelerations (SFT-KD-Recon)",
                       description=__doc__)
    p.add_argument("--config", default=None, help="YAML study config (default: the built-in "
                   "default study, as in configs/study_sft.yaml)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="smoke: plumbing in < 3 min on a CPU; cpu_residual: the recorded CPU study "
                        "(docs/results.md); cpu: an earlier CPU study (non-residual)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study config value, e.g. --set seeds=[42,43,44] (repeatable)")
    add_device_arg(p, None)
    add_out_arg(p, "study")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


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
