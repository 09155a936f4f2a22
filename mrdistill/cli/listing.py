"""`mrdistill list`: the registered models and KD losses."""

from __future__ import annotations

import argparse

from mrdistill.distill import list_kd
from mrdistill.models import list_models


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="registered models and KD losses", description=__doc__)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("models:    " + ", ".join(list_models()))
    print("KD losses: " + ", ".join(list_kd()))
    return 0
