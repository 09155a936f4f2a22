"""Timing and memory primitives of the benchmarks: one timing loop for all of them.

`timed_rounds` runs every candidate once per round, together with the fp32 matmul peak, in an
order rotated each round, so that slow drifts of background load on a shared machine hit every
candidate alike and ratios of per-round times stay honest. `summarise` turns a candidate's
per-round times into latency percentiles, throughput and achieved GFLOP/s against the same rounds'
peaks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

MEMORY_METHOD = ("peak RSS during one call: VmHWM of /proc/self/status after malloc_trim(0) and "
                 "resetting it through /proc/self/clear_refs (Linux); in brackets: VmHWM minus VmRSS "
                 "just before the call, i.e. the extra memory the call needed. CUDA: "
                 "torch.cuda.max_memory_allocated during one call")


def seconds(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> float:
    """Wall time of one call (`sync` waits for queued device work before the clock stops)."""
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def matmul_peak(n: int, device: str = "cpu") -> Callable[[], float]:
    """A closure timing 3 fp32 (n x n) @ (n x n) matmuls on `device` -> their median GFLOP/s.
    Local generators: global RNG state is left alone."""
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(1)).to(device)
    b = torch.randn(n, n, generator=torch.Generator().manual_seed(2)).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    seconds(lambda: a @ b, sync)  # warm-up (BLAS initialises its buffers on the first call)
    return lambda: 2 * n**3 / statistics.median(seconds(lambda: a @ b, sync) for _ in range(3)) / 1e9


def _status_kib(field: str) -> int | None:
    """A `VmXXX:` field of /proc/self/status in KiB (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _release_free_heap() -> None:
    """glibc malloc_trim(0): hand free heap pages back to the OS; a no-op where unavailable."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_mib(fn: Callable[[], object]) -> dict:
    """Peak RSS (MiB) while `fn` runs and its increase over the RSS just before (MEMORY_METHOD).

    tracemalloc does not see torch's (or ONNX Runtime's) allocations, hence RSS. Off Linux, falls
    back to `resource.getrusage(...).ru_maxrss` (the process lifetime peak; delta unknown).
    """
    _release_free_heap()  # so that "before" is live memory, not heap kept by earlier calls
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS")
    except OSError:
        before = None
    fn()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "delta_mib": None}
    return {"peak_mib": peak / 1024, "delta_mib": (peak - before) / 1024}


def peak_cuda_mib(fn: Callable[[], object]) -> dict:
    """torch.cuda.max_memory_allocated during one call (MiB), and its increase over the start."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"peak_mib": peak / 2**20, "delta_mib": (peak - before) / 2**20}


def timed_rounds(jobs: dict[str, Callable[[], float]], repeats: int,
                 on_round: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """`repeats` rounds of one call of every job, the order rotated each round, so that no job
    always runs right after another (e.g. after the matmul peak).

    jobs: key -> a closure returning one measurement: the seconds of one call of a candidate (it
    times itself, so a device sync can be inside) or a `matmul_peak` closure's GFLOP/s.
    Returns the measurements per round per key. `on_round` is called after every round (progress).
    """
    keys = list(jobs)
    out: dict[str, list[float]] = {key: [] for key in keys}
    for r in range(repeats):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            out[key].append(jobs[key]())
        if on_round is not None:
            on_round()
    return out


def summarise(times: Sequence[float], peaks: Sequence[float], flops_per_slice: int, batch: int) -> dict:
    """Latency and throughput of one candidate from its per-round times and the rounds' peaks."""
    median = statistics.median(times)
    p95 = float(np.percentile(times, 95))
    return {
        "seconds_per_call": list(times),
        "latency_ms": {"p50_batch": 1e3 * median, "p95_batch": 1e3 * p95,
                       "p50_slice": 1e3 * median / batch, "p95_slice": 1e3 * p95 / batch},
        "slices_per_s": batch / median,
        "best_slices_per_s": batch / min(times),
        "ms_per_slice": 1e3 * median / batch,
        "gflops_per_slice": flops_per_slice / 1e9,
        "achieved_gflops": flops_per_slice * batch / median / 1e9,
        "fraction_of_peak": statistics.median(flops_per_slice * batch / t / 1e9 / p
                                              for t, p in zip(times, peaks)),
    }


def per_round_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator/denominator (e.g. teacher time / student time = speed-up)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))
