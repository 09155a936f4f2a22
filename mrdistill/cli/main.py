"""Entry point: `mrdistill <command> ...`. Bad input -> one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys

from mrdistill.cli import demo, distill, evaluate, listing, train
from mrdistill.cli import study
from mrdistill.cli import predict, prepare
from mrdistill.errors import MrdistillError

COMMANDS = (demo, train, distill, evaluate, listing, study, predict, prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrdistill", description="Knowledge distillation for accelerated MRI reconstruction.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MrdistillError as exc:
        print(f"mrdistill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mrdistill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
