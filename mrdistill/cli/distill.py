"""`mrdistill distill`: distil a teacher checkpoint into a student with the configured KD stages."""

from __future__ import annotations

import argparse

from mrdistill.cli.common import config_from_args
from mrdistill.train.distributed import is_main
from mrdistill.train.runs import distill_run


def run(args: argparse.Namespace) -> int:
    result = distill_run(config_from_args(args), overwrite=args.overwrite, resume=args.resume)
    if is_main():  # under torchrun one report, from rank 0
        print(result.table)
        print(f"\nrun: {result.run_dir}")
    return 0
