"""`mrdistill study`: KD methods x ordinary/student-friendly teachers x accelerations, one table;
or, for a config with a `students` list, the quality-speed front (student sizes x plain/KD recipes
x seeds: PSNR against ms and GFLOPs per slice, and the smallest student within `delta` dB).

Trained runs are cached by config hash under the study folder, so an interrupted study resumes and
a repeated one only re-evaluates.
"""

from __future__ import annotations

import argparse
import sys

import torch

from mrdistill.cli.common import add_device_arg
from mrdistill.device import resolve_device
from mrdistill.cli.common import add_out_arg, split_out
from mrdistill.errors import MrdistillError
from mrdistill.study import PRESETS, StudyConfig, StudyResult, load_study_config, run_study
from mrdistill.study.cells import Cell
from mrdistill.study.executors import FAILED, SKIPPED, Outcome
from mrdistill.study.front import run_front
from mrdistill.study.front_config import FrontConfig, is_front, load_front_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="KD methods x Std/SFT teachers x accelerations (SFT-KD-Recon)",
                       description=__doc__)
    p.add_argument("--config", default=None, help="YAML study config (default: the built-in "
                   "default study, as in configs/study_sft.yaml)")
    p.add_argument("--preset", default=None,
                   help=f"the SFT study's presets ({', '.join(sorted(PRESETS))}; smoke: plumbing in "
                        "< 3 min on a CPU; cpu_residual: the recorded CPU study, docs/results.md), "
                        "or a preset of a front config's `presets:` (e.g. smoke)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study config value, e.g. --set seeds=[42,43,44] (repeatable)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="cells trained at once, each in its own process with cores/N torch threads "
                        "(unless executor.threads is set); sets executor.jobs (default 1: in this process)")
    p.add_argument("--executor", default=None, metavar="KIND",
                   help="local (this machine), slurm (one Slurm job per cell through submitit; "
                        "resources from executor.* in the config or --set executor.partition=...) "
                        "or submitit-local (submitit's local executor); sets executor.kind")
    add_device_arg(p, None)
    add_out_arg(p, "study")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


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
