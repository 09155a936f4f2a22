"""Keep freed memory inside the process, so that training does not page-fault on every step.

Why: glibc's malloc hands blocks of more than a few MiB to the kernel with mmap and gives them back
on free (large heap tops are trimmed too). A training step frees and allocates the same activation
tensors every step, so every step touches all of them as fresh zero pages (the kernel zeroes each
4 KiB page on first touch): a large share of a CPU training step (figures in benchmarks/README.md,
"Training step"). With mmap and trimming off, freed blocks are reused and a step touches no new page
after the first few; results are bit-identical (only where the bytes live changes). The price: the
process keeps its peak memory until it ends (benchmarks/README.md records the peak resident size),
which a training run needs again at its next step anyway.

This changes process-wide state, so library code never calls it: the `mrdistill` command does (its
process is its own), and a program that trains through the library can call it once at start.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_NEVER = -1  # for M_TRIM_THRESHOLD: never give the heap top back (mallopt(3))
# A user's own glibc malloc settings win (as OMP_WAIT_POLICY in cli.main).
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                  "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def user_malloc_settings() -> bool:
    """True when the environment already tunes glibc's malloc (MALLOC_*_ or GLIBC_TUNABLES)."""
    return (any(name in os.environ for name in _USER_SETTINGS)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""))


def retain_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse: no mmap'ed blocks, no trimming.

    Returns True when the setting was made; False (nothing changed) off glibc, where the
    environment already tunes malloc, or where `mallopt` refuses. Idempotent."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or user_malloc_settings():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _NEVER))
