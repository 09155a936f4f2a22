"""`mrdistill study`: KD methods x ordinary/student-friendly teachers x accelerations, one table;
or, for a config with a `students` list, the quality-speed front (student sizes x plain/KD recipes
x seeds: PSNR against ms and GFLOPs per slice, and the smallest student within `delta` dB).

Trained runs are cached by config hash under the study folder, so an interrupted study resumes and
a repeated one only re-evaluates.
"""

from __future__ import annotations

import argparse

from mrdistill.cli.common import split_out
from mrdistill.device import resolve_device
from mrdistill.study import StudyConfig, load_study_config, run_study
from mrdistill.study.front import run_front
from mrdistill.study.front_config import FrontConfig, is_front, load_front_config


def _with_args(cfg: StudyConfig | FrontConfig, args: argparse.Namespace) -> None:
    """The command-line options that override the config: --no-progress, --device, --out."""
    if args.no_progress:
        cfg.progress = False
    cfg.device = str(resolve_device(args.device or cfg.device))
    if args.out is not None:
        cfg.out_dir, cfg.name = split_out(args.out)


def run(args: argparse.Namespace) -> int:
    if is_front(args.config, args.overrides):
        front = load_front_config(args.config, args.preset, args.overrides)
        _with_args(front, args)
        done = run_front(front)
        print(done.markdown)
        print(f"front: {done.out / 'front.md'}  table: {done.out / 'front.csv'}  "
              f"figure: {done.out / 'front.png'}")
        return 0
    cfg = load_study_config(args.config, args.preset, args.overrides)
    _with_args(cfg, args)
    result = run_study(cfg)
    print(result.markdown)
    print(f"report: {result.out / 'report.md'}  table: {result.out / 'study.csv'}  "
          f"figures: {result.out / 'figures'}")
    return 0
