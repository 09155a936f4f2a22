"""`mrdistill train`: supervised training of one model (teacher or student) from a config."""

from __future__ import annotations

import argparse

from mrdistill.cli.common import config_from_args
from mrdistill.train.distributed import is_main
from mrdistill.train.runs import train_run


def run(args: argparse.Namespace) -> int:
    result = train_run(config_from_args(args), overwrite=args.overwrite, resume=args.resume)
    if is_main():  # under torchrun one report, from rank 0
        print(result.table)
        print(f"\nrun: {result.run_dir}")
    return 0
