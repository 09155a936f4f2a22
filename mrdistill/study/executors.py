"""Run a study's cells: in the study's process, in worker processes on this machine, or as
submitit jobs (Slurm, or submitit's local executor).

Every executor walks the cells in dependency order (a KD student after its teacher and its
initialisation). A cell whose marker is there is reused; one another live process holds (its
lock) is waited for; the others are started, at most `jobs` at a time (Slurm: all whose
dependencies are done, as one job array). A failed cell is reported with its log and does not
stop the others; the cells that depend on it are skipped. The driver keeps no state a rerun
needs: finished cells are in the cache, running ones hold their locks, and Slurm jobs it
submitted are listed in `<jobs folder>/jobs.json` so a rerun re-attaches to them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrdistill.atomic import atomic_write_text
from mrdistill.errors import MrdistillError
from mrdistill.study.cells import Cell, ensure, is_done, load_cell
from mrdistill.study.config import SLURM_KEYS, ExecutorConfig
from mrdistill.study.locks import holder, is_locked, lock_path
from mrdistill.study.worker import LOCKED, CellJob, pool_setup, pool_task, write_spec

CLUSTER_EXTRA = ("the slurm and submitit-local executors need submitit, the optional `cluster` "
                 "extra: pip install 'mrdistill[cluster]'")
TRAINED, REUSED, FAILED, SKIPPED = "trained", "reused", "failed", "skipped"


@dataclass
class Outcome:
    """What became of one cell: status (trained, reused, failed, skipped), seconds, log, error."""

    status: str
    seconds: float = 0.0
    log: Path | None = None
    error: str = ""


def check_executor(ex: ExecutorConfig) -> None:
    """Options that cannot work, before anything runs: Slurm options with a local executor, a
    submitit executor without submitit installed."""
    if ex.kind == "local":
        given = [k for k in SLURM_KEYS if getattr(ex, k) is not None]
        if given:
            raise MrdistillError(f"executor.{given[0]} is a Slurm option; it needs --executor slurm "
                                 f"(or submitit-local)")
        return
    try:
        import submitit  # noqa: F401 - the optional `cluster` extra
    except ImportError:
        raise MrdistillError(CLUSTER_EXTRA) from None


def threads_per_cell(ex: ExecutorConfig) -> int:
    """`executor.threads`, else this machine's cores shared by the cells running at once."""
    return ex.threads or max(1, (os.cpu_count() or 1) // ex.jobs)


def _dependencies(cell: Cell) -> list[str]:
    return [k for k in (cell.teacher, cell.init) if k]


def _last_line(path: Path | None) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path else []
    except OSError:
        lines = []
    failed = [ln for ln in lines if ln.startswith("cell failed: ")]
    return (failed or lines or ["no log"])[-1].removeprefix("cell failed: ")


class _Pool:
    """`jobs` worker processes on this machine, each training one cell after another (started
    once: importing torch costs seconds per process, as much as a small cell's training)."""

    def __init__(self, jobs: int, threads: int) -> None:
        self.jobs, self.threads = jobs, threads
        self.pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        # spawn: a fresh interpreter per worker (forking a process that has started OpenMP
        # threads can deadlock the child).
        return ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=pool_setup, initargs=(self.threads,))

    def start(self, cells: list[tuple[Cell, Path]]) -> list[Any]:
        if getattr(self.pool, "_broken", False):  # a worker died (e.g. killed for memory)
            self.pool = self._new()
        handles = []
        for _, spec in cells:
            log = spec.with_suffix(".log")
            log.write_text("")
            handles.append((self.pool.submit(pool_task, str(spec), str(log)), log))
        return handles

    def done(self, handle: Any) -> bool:
        return handle[0].done()

    def result(self, handle: Any) -> tuple[int, Path, str]:
        try:
            code = handle[0].result()
        except BrokenProcessPool:
            return 1, handle[1], "its worker process died (killed, or out of memory)"
        return code, handle[1], _last_line(handle[1]) if code else ""

    def wait(self, handles: list[Any], seconds: float) -> None:
        """Until one of the running cells ends (or `seconds` pass)."""
        if handles:
            futures.wait([h[0] for h in handles], seconds, return_when=futures.FIRST_COMPLETED)
        else:
            time.sleep(seconds)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Submitit:
    """submitit jobs: Slurm (an array per round of ready cells) or its local executor."""

    def __init__(self, ex: ExecutorConfig, folder: Path, threads: int) -> None:
        import submitit  # the optional `cluster` extra (checked by `check_executor`)

        self.kind, self.folder = ex.kind, folder / "submitit"
        cluster = "slurm" if ex.kind == "slurm" else "local"
        # Requeues after a timeout (preemptions are requeued by submitit without a limit).
        self.executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster,
                                              slurm_max_num_timeout=ex.requeues)
        params: dict[str, Any] = {"timeout_min": ex.time_min or 60 * 24,
                                  "cpus_per_task": ex.cpus_per_cell or threads}
        if ex.gpus_per_cell is not None:
            params["gpus_per_node"] = ex.gpus_per_cell
        if ex.mem_gb is not None:
            params["mem_gb"] = ex.mem_gb
        if ex.partition is not None:
            params["slurm_partition"] = ex.partition
        if ex.array_parallelism is not None:
            params["slurm_array_parallelism"] = ex.array_parallelism
        if ex.additional:
            params["slurm_additional_parameters"] = dict(ex.additional)
        self.executor.update_parameters(**params)
        self.registry = folder / "jobs.json"

    def _jobs(self) -> dict[str, str]:
        try:
            return json.loads(self.registry.read_text())
        except (OSError, ValueError):
            return {}

    def attach(self, cell: Cell) -> Any | None:
        """A job this study submitted for `cell` (a killed driver's) that is still queued or
        running, else None. Only Slurm jobs outlive their driver."""
        job_id = self._jobs().get(cell.digest)
        if self.kind != "slurm" or job_id is None:
            return None
        import submitit

        job = submitit.SlurmJob(folder=self.folder, job_id=job_id)
        return None if job.done() else job

    def release_dead(self, cell: Cell) -> None:
        """Remove the lock of a Slurm job that ended without finishing its cell (a node failure
        or `scancel` leaves it; a lock of another host is otherwise trusted)."""
        job_id = (holder(cell.run_dir) or {}).get("job")
        if self.kind != "slurm" or not job_id:
            return
        import submitit

        if submitit.SlurmJob(folder=self.folder, job_id=str(job_id)).done() and not is_done(cell):
            lock_path(cell.run_dir).unlink(missing_ok=True)

    def start(self, cells: list[tuple[Cell, Path]]) -> list[Any]:
        with self.executor.batch():
            jobs = [self.executor.submit(CellJob(str(spec))) for _, spec in cells]
        registry = self._jobs()
        registry.update({cell.digest: job.job_id for (cell, _), job in zip(cells, jobs)})
        atomic_write_text(self.registry, json.dumps(registry, indent=1) + "\n")
        return jobs

    def done(self, job: Any) -> bool:
        return job.done()

    def wait(self, handles: list[Any], seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        pass  # submitted jobs run on without the driver

    def result(self, job: Any) -> tuple[int, Path, str]:
        log = Path(job.paths.stderr)
        try:
            return int(job.result()), log, ""
        except Exception as exc:  # the job's exception (or submitit's account of its end)
            text = str(exc).strip().splitlines()
            return 1, log, next((ln for ln in reversed(text) if ln.strip()), type(exc).__name__)


class Workers:
    """Where cells run, kept for a whole study (one pool of worker processes for all its
    accelerations): `with Workers(cfg.executor, cfg.jobs_dir) as workers: run_cells(..., workers)`."""

    def __init__(self, ex: ExecutorConfig, folder: Path) -> None:
        check_executor(ex)
        self.ex, self.folder = ex, folder
        # The torch threads each cell trains with: this process's own when it trains them here.
        self.threads = torch.get_num_threads() if self.in_process else threads_per_cell(ex)
        self._launcher: _Pool | _Submitit | None = None

    @property
    def in_process(self) -> bool:
        return self.ex.kind == "local" and self.ex.jobs == 1

    def launcher(self) -> _Pool | _Submitit:
        if self._launcher is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._launcher = (_Pool(self.ex.jobs, self.threads) if self.ex.kind == "local"
                              else _Submitit(self.ex, self.folder, self.threads))
        return self._launcher

    def close(self) -> None:
        if self._launcher is not None:
            self._launcher.close()
            self._launcher = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_cells(cells: list[Cell], data_for: Callable[[Cell], dict], data_seed: int,
              workers: Workers, on_cell: Callable[[Cell, Outcome], None] | None = None
              ) -> tuple[dict[str, nn.Module], dict[str, Outcome]]:
    """Run (or reuse) every cell -> (finished cells' best models by key, outcome by key).

    data_for(cell): the cell's data sets (used in this process only, by the in-process executor);
    data_seed: the seed they were built with (workers build their own). Worker specs and logs
    go to `<workers.folder>/<cell folder>.json|.log`, with submitit's files below it."""
    ex, folder = workers.ex, workers.folder
    if workers.in_process:
        folder.mkdir(parents=True, exist_ok=True)
        return _in_process(cells, data_for, folder, on_cell)
    threads = workers.threads
    launcher = workers.launcher()
    limit = 10**9 if ex.kind == "slurm" else ex.jobs
    outcomes: dict[str, Outcome] = {}
    running: dict[str, tuple[Cell, Any, float]] = {}
    waiting: dict[str, float] = {}  # held by another process: when we began to wait
    pending = list(cells)

    def finish(cell: Cell, outcome: Outcome) -> None:
        outcomes[cell.key] = outcome
        if on_cell is not None:
            on_cell(cell, outcome)

    while pending or running or waiting:
        ready: list[tuple[Cell, Path]] = []
        for cell in list(pending):
            deps = [outcomes.get(k) for k in _dependencies(cell)]
            if any(d is not None and d.status in (FAILED, SKIPPED) for d in deps):
                pending.remove(cell)
                finish(cell, Outcome(SKIPPED, error="a cell it depends on did not finish"))
                continue
            if any(d is None for d in deps):
                continue
            if is_done(cell):
                pending.remove(cell)
                waiting.pop(cell.key, None)
                finish(cell, Outcome(REUSED))
                continue
            job = launcher.attach(cell) if isinstance(launcher, _Submitit) else None
            if job is not None:  # a rerun driver re-attaches to the job a killed one submitted
                pending.remove(cell)
                running[cell.key] = (cell, job, time.perf_counter())
                continue
            if isinstance(launcher, _Submitit):
                launcher.release_dead(cell)
            if is_locked(cell.run_dir):  # another live process trains it: wait for it
                waiting.setdefault(cell.key, time.perf_counter())
                continue
            waiting.pop(cell.key, None)
            if len(running) + len(ready) < limit:
                pending.remove(cell)
                name = cell.run_dir.name
                ready.append((cell, write_spec(folder / f"{name}.json", cell, data_seed, threads)))
        for (cell, _), handle in zip(ready, launcher.start(ready) if ready else []):
            running[cell.key] = (cell, handle, time.perf_counter())
        for key, (cell, handle, start) in list(running.items()):
            if not launcher.done(handle):
                continue
            del running[key]
            code, log, error = launcher.result(handle)
            if code == LOCKED:  # claimed by another process after our look: wait for it
                pending.insert(0, cell)
                waiting[key] = time.perf_counter()
            elif code == 0 and is_done(cell):
                finish(cell, Outcome(TRAINED, time.perf_counter() - start, log))
            else:
                finish(cell, Outcome(FAILED, time.perf_counter() - start, log, error or "no marker written"))
        waiting = {k: v for k, v in waiting.items() if any(c.key == k for c in pending)}
        if pending or running or waiting:
            launcher.wait([h for _, h, _ in running.values()], ex.poll_seconds)
    models = {c.key: load_cell(c) for c in cells if outcomes[c.key].status in (TRAINED, REUSED)}
    return models, outcomes


def _in_process(cells: list[Cell], data_for: Callable[[Cell], dict], folder: Path,
                on_cell: Callable[[Cell, Outcome], None] | None) -> tuple[dict[str, nn.Module], dict[str, Outcome]]:
    """Jobs 1: every cell in this process, models kept in memory (a KD student's teacher is the
    trained object itself)."""
    models: dict[str, nn.Module] = {}
    outcomes: dict[str, Outcome] = {}
    for cell in cells:
        if any(outcomes[k].status in (FAILED, SKIPPED) for k in _dependencies(cell)):
            outcome = Outcome(SKIPPED, error="a cell it depends on did not finish")
        else:
            start = time.perf_counter()
            try:
                outcome = Outcome(TRAINED if ensure(cell, data_for(cell), models) else REUSED,
                                  time.perf_counter() - start)
            except Exception as exc:  # reported with its log; the other cells go on
                log = folder / f"{cell.run_dir.name}.log"
                atomic_write_text(log, traceback.format_exc())
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                outcome = Outcome(FAILED, time.perf_counter() - start, log, first)
        outcomes[cell.key] = outcome
        if on_cell is not None:
            on_cell(cell, outcome)
    return models, outcomes
