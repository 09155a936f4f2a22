"""Entry point: `mrdistill <command> ...`. Bad input -> one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

# Idle OpenMP threads sleep instead of spinning. Set before torch loads; a user's own setting wins.
# On a busy or small machine spinning threads starve the working ones (measured: a demo epoch took
# 53 s instead of 3 s on a shared 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mrdistill.allocator import retain_freed_memory
from mrdistill.cli import demo, distill, evaluate, listing, train
from mrdistill.cli import study
from mrdistill.cli import benchmark, export, predict, prepare
from mrdistill.errors import MrdistillError
from mrdistill.folder_lock import release_locks
from mrdistill.train.distributed import shutdown

COMMANDS = (demo, train, distill, evaluate, listing, study, predict, prepare, export, benchmark)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as `MrdistillError`: one line, exit code 2, like every bad input."""

    def error(self, message: str) -> NoReturn:
        # The line starts with "mrdistill: error:" already: name only the subcommand, if any.
        command = self.prog.removeprefix("mrdistill").strip()
        raise MrdistillError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mrdistill", description="Knowledge distillation for accelerated MRI reconstruction.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


PACKAGE = Path(__file__).resolve().parents[1]


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """mrdistill's own warnings (e.g. a killed run's folder restored) as one line, like its errors;
    other libraries' warnings keep Python's format (they name the code that raised them). Only the
    format changes, so whoever records warnings (pytest, a caller's catch_warnings) still gets them."""
    if Path(filename).resolve().is_relative_to(PACKAGE):
        return f"mrdistill: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    previous = warnings.formatwarning  # put back when main returns (callers in-process, tests)
    warnings.formatwarning = _one_line_warning
    try:
        return _run(argv)
    finally:
        warnings.formatwarning = previous


def _run(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except MrdistillError as exc:
        print(f"mrdistill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mrdistill: interrupted", file=sys.stderr)
        return 130
    finally:
        release_locks()  # the command no longer writes its output folders
        shutdown()  # leave torchrun's process group, if this run joined one


def entry() -> int:
    """The `mrdistill` program (console script, `python -m mrdistill.cli.main`, torchrun). The
    process is the program's own, so it keeps freed memory for reuse (`allocator`): a training step
    then stops page-faulting its activations in afresh. `main` alone, called in-process by another
    program, leaves that program's allocator as it is."""
    retain_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
