"""One cell outside the study's process: `pool_task` (in a worker process of the `local`
executor's pool), `CellJob(SPEC.json)` (a submitit job, on Slurm or submitit's local executor) or
`python -m mrdistill.study.worker SPEC.json` (by hand, e.g. to rerun one cell and read its error).

A spec is a JSON file holding the cell (key, kind, labels, hash, dependencies), its run config,
the seed of the study's data sets and the torch threads to use. The worker builds the data sets
exactly as the study's own process does (`make_datasets(cell data, study seed)`), takes the cell's
lock, trains it (resuming from `last.pt` when a killed or requeued run left one) and writes its
marker. Exit codes: 0 trained (or found finished), 3 another live process holds the cell, 1 failed
(the traceback and a last line `cell failed: ...` in the log).
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mrdistill.atomic import atomic_write_text
from mrdistill.config import RunConfig, from_dict, to_dict
from mrdistill.data.build import make_datasets
from mrdistill.models.foreign import import_plugins
from mrdistill.study.cells import Cell, is_done, train_cell
from mrdistill.study.locks import try_lock, unlock

LOCKED = 3


def write_spec(path: Path, cell: Cell, data_seed: int, threads: int) -> Path:
    """The worker's spec of `cell` at `path` (atomically)."""
    doc = {k: v for k, v in asdict(cell).items() if k != "cfg"}
    doc.update(config=to_dict(cell.cfg), data_seed=data_seed, threads=threads)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def read_spec(path: str | Path) -> tuple[Cell, int, int]:
    """(cell, data seed, threads) of a spec file."""
    doc: dict[str, Any] = json.loads(Path(path).read_text())
    cfg = from_dict(RunConfig, doc.pop("config"), "cell spec")
    data_seed, threads = doc.pop("data_seed"), doc.pop("threads")
    return Cell(cfg=cfg, **doc), data_seed, threads


def run_spec(path: str | Path) -> int:
    """Train the spec's cell in this process -> an exit code (module docstring)."""
    cell, data_seed, _ = read_spec(path)
    if is_done(cell):
        return 0
    if not try_lock(cell.run_dir):
        return LOCKED
    try:
        if is_done(cell):
            return 0
        import_plugins(cell.cfg.plugins)  # the data sets check nothing model-related; models do
        cell.cfg.progress = False  # no progress bars in a log (not part of the cell's hash)
        train_cell(cell, make_datasets(cell.cfg.data, data_seed), teacher=None)
        return 0
    finally:
        unlock(cell.run_dir)


def pool_setup(threads: int) -> None:
    """Initialiser of a `local` executor's worker process (its program entry): torch threads."""
    torch.set_num_threads(threads)


def pool_task(spec: str, log: str) -> int:
    """One cell in a worker process of the `local` executor's pool, its output (progress, warnings,
    a traceback) in `log` -> an exit code (module docstring)."""
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return _run_reported(spec)


def _run_reported(spec: str) -> int:
    try:
        return run_spec(spec)
    except Exception as exc:  # the driver reports the last line; the traceback stays in the log
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"cell failed: {first}", file=sys.stderr, flush=True)
        return 1


class CellJob:
    """A submitit job of one cell. On preemption or timeout submitit calls `checkpoint` and
    requeues the same job, which resumes from the cell's `last.pt` (`train_cell`)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def __call__(self) -> int:
        torch.set_num_threads(read_spec(self.spec)[2])  # this job's process: its own setting
        return run_spec(self.spec)  # an exception fails the job; submitit logs its traceback

    def checkpoint(self) -> Any:
        import submitit  # the optional `cluster` extra; only ever called inside a submitit job

        return submitit.helpers.DelayedSubmission(CellJob(self.spec))


def main(argv: list[str] | None = None) -> int:
    """Entry of a worker process (stdout and stderr go to the cell's log)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mrdistill.study.worker SPEC.json", file=sys.stderr)
        return 2
    torch.set_num_threads(read_spec(args[0])[2])  # the program entry of this process
    return _run_reported(args[0])


if __name__ == "__main__":
    sys.exit(main())
