"""`mrdistill study` (arguments: `cli.parsers`): KD methods x ordinary/student-friendly teachers x accelerations, one table;
or, for a config with a `students` list, the quality-speed front (student sizes x plain/KD recipes
x seeds: PSNR against ms and GFLOPs per slice, and the smallest student within `delta` dB).

Trained runs are cached by config hash under the study folder, so an interrupted study resumes and
a repeated one only re-evaluates.
"""

from __future__ import annotations

import argparse
import sys

import torch

from mrdistill.device import resolve_device
from mrdistill.cli.common import split_out
from mrdistill.errors import MrdistillError
from mrdistill.study import StudyConfig, StudyResult, load_study_config, run_study
from mrdistill.study.cells import Cell
from mrdistill.study.executors import FAILED, SKIPPED, Outcome
from mrdistill.study.front import run_front
from mrdistill.study.front_config import FrontConfig, is_front, load_front_config


def _executor_overrides(args: argparse.Namespace) -> list[str]:
    """--jobs and --executor as `executor.*` overrides (checked with the config)."""
    if args.jobs is not None and args.jobs < 1:
        raise MrdistillError(f"--jobs must be at least 1, got {args.jobs}")
    out = [] if args.jobs is None else [f"executor.jobs={args.jobs}"]
    return out + ([] if args.executor is None else [f"executor.kind={args.executor}"])


def _report_cell(cell: Cell, outcome: Outcome, progress: bool) -> None:
    """One line per finished cell on stderr (failures always, with the log to read)."""
    if outcome.status in (FAILED, SKIPPED):
        log = f"; log: {outcome.log}" if outcome.log else ""
        print(f"cell {cell.key} {outcome.status}: {outcome.error}{log}", file=sys.stderr, flush=True)
    elif progress:
        print(f"cell {cell.key}: {outcome.status} ({outcome.seconds:.0f} s)", file=sys.stderr, flush=True)


def _with_args(cfg: StudyConfig | FrontConfig, args: argparse.Namespace) -> None:
    """The command-line options that override the config: --no-progress, --device, --out."""
    if args.no_progress:
        cfg.progress = False
    cfg.device = str(resolve_device(args.device or cfg.device))
    if args.out is not None:
        cfg.out_dir, cfg.name = split_out(args.out)
    ex = cfg.executor
    if ex.kind == "local" and ex.jobs == 1 and ex.threads is not None:
        torch.set_num_threads(ex.threads)  # cells train in this process: the command's own setting


def run(args: argparse.Namespace) -> int:
    overrides = [*args.overrides, *_executor_overrides(args)]
    if is_front(args.config, overrides):
        cfg: StudyConfig | FrontConfig = load_front_config(args.config, args.preset, overrides)
    else:
        cfg = load_study_config(args.config, args.preset, overrides)
    _with_args(cfg, args)
    progress = cfg.progress

    def report(cell: Cell, outcome: Outcome) -> None:
        _report_cell(cell, outcome, progress)

    if isinstance(cfg, FrontConfig):
        result: StudyResult = run_front(cfg, report)
        files = ("front", "front.md"), ("table", "front.csv"), ("figure", "front.png")
    else:
        result = run_study(cfg, report)
        files = ("report", "report.md"), ("table", "study.csv"), ("figures", "figures")
    print(result.markdown)
    print("  ".join(f"{what}: {result.out / name}" for what, name in files))
    return 1 if result.failed else 0  # written from what finished; the failures were reported
