"""Entry point: `mrdistill <command> ...`. Bad input -> one line on stderr and exit code 2.

The parser (`cli.parsers`) needs only the standard library, so help, `list` and argument errors
answer at once; the module that does a command's work (and torch with it) is imported when the
command runs. Importing this module changes nothing in the process: the process-wide settings of
training (`process_settings`) are made by `entry`, the `mrdistill` program, for the commands that
train.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path

from mrdistill.cli.parsers import COMMAND_MODULES, build_parser
from mrdistill.errors import MrdistillError, MrdistillNote
from mrdistill.folder_lock import release_locks

# The commands that train: only they get the process-wide settings of `process_settings`.
TRAINING_COMMANDS = ("train", "distill", "demo", "study")
PACKAGE = Path(__file__).resolve().parents[1]


def process_settings() -> None:
    """What a training process of its own sets before torch loads. Idle OpenMP threads sleep
    instead of spinning (a user's own OMP_WAIT_POLICY wins): on a busy or small machine spinning
    threads starve the working ones (measured: a demo epoch took 53 s instead of 3 s on a shared
    2-core machine). Freed memory is kept for reuse (`allocator`): a training step then stops
    page-faulting its activations in afresh."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Imported here, not at the top: the `accel` package loads torch, which help, `list` and
    # argument errors must not wait for.
    from mrdistill.accel import retain_freed_memory
    retain_freed_memory()


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """mrdistill's own warnings (e.g. a killed run's folder restored) as one line, like its errors,
    and its notes (`MrdistillNote`) as `mrdistill: note: ...`; other libraries' warnings keep
    Python's format (they name the code that raised them). Only the format changes, so whoever
    records warnings (pytest, a caller's catch_warnings) still gets them."""
    if issubclass(category, MrdistillNote):
        return f"mrdistill: note: {message}\n"
    if Path(filename).resolve().is_relative_to(PACKAGE):
        return f"mrdistill: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    """Run one command in-process (as a library caller or a test does): no process-wide settings."""
    return _main(argv, program=False)


def _main(argv: list[str] | None, program: bool) -> int:
    previous = warnings.formatwarning  # put back when main returns (callers in-process, tests)
    warnings.formatwarning = _one_line_warning
    try:
        return _run(argv, program)
    finally:
        warnings.formatwarning = previous


def _run(argv: list[str] | None, program: bool) -> int:
    try:
        args = build_parser().parse_args(argv)
        if program and args.command in TRAINING_COMMANDS:
            process_settings()  # before the command's module loads torch
        module = importlib.import_module(f"mrdistill.cli.{COMMAND_MODULES[args.command]}")
        return int(module.run(args) or 0)
    except MrdistillError as exc:
        print(f"mrdistill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mrdistill: interrupted", file=sys.stderr)
        return 130
    finally:
        release_locks()  # the command no longer writes its output folders
        # Leave torchrun's process group, if this run joined one: only a command that imported
        # `train.distributed` can have.
        distributed = sys.modules.get("mrdistill.train.distributed")
        if distributed is not None:
            distributed.shutdown()


def entry() -> int:
    """The `mrdistill` program (console script, `python -m mrdistill.cli.main`, torchrun): `main`
    plus the process-wide settings of the commands that train (`process_settings`)."""
    return _main(None, program=True)


if __name__ == "__main__":
    sys.exit(entry())
