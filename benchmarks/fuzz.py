"""Fuzz every reader with mutated and truncated files: 0 uncaught exceptions, 0 runs over the limit.

    OMP_NUM_THREADS=1 python benchmarks/fuzz.py --files 10000 --seed 0 \
        --out benchmarks/results/fuzz.json

For file i: the reader kind is `KINDS[i % 13]`; 1 to 3 mutations (flip, insert, delete, truncate,
overwrite, duplicate; tests/reliability/fuzz_harness.py) drawn from a generator seeded by (seed, i)
are applied to that kind's small valid seed file, and the result is read completely the way a
command reads it (`fuzz_harness.read_as`: fastMRI metadata under the time limit, then every slice).
Outcomes: "ok" (a valid result), "error" (`MrdistillError`: the one allowed failure), "uncaught"
(anything else, including a result that fails the validity checks) and "over_limit" (the read took
longer than `--time-limit` + `--margin` seconds, or was killed at twice that). Reads run one after
another in a forked worker, so a hang cannot stop the benchmark. The JSON records counts per kind,
the slowest reads, every uncaught exception (with the mutations that made it), the clear errors
whose reason is only an exception class ("unclear", which should be none), the command and the
CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))
from fuzz_harness import KINDS, MUTATIONS, mutate, read_as, write_seeds  # noqa: E402

from mrdistill.errors import MrdistillError  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402
from mrdistill.timelimit import TimeLimitExceeded, iter_time_limited  # noqa: E402


# an error message whose reason is only an exception class, not words
UNCLEAR = re.compile(r"\(\w+(Error|Exception|Warning)\)$|unexpected \w+ while reading")


def draw_ops(seed: int, i: int) -> list[tuple[str, float, int]]:
    rng = np.random.default_rng([seed, i])
    return [(str(rng.choice(MUTATIONS)), float(rng.random()), int(rng.integers(0, 256)))
            for _ in range(int(rng.integers(1, 4)))]


def run_command() -> str:
    """The command as it was run: thread setting and niceness from this process, not assumed."""
    threads = os.environ.get("OMP_NUM_THREADS")
    prefix = (f"OMP_NUM_THREADS={threads} " if threads else "") + \
        (f"nice -n {os.nice(0)} " if os.nice(0) else "")
    return prefix + "python " + " ".join(sys.argv)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=5.0,
                        help="the readers' metadata time limit (fastmri.metadata_time_limit), seconds")
    parser.add_argument("--margin", type=float, default=5.0,
                        help="seconds a whole read may take beyond --time-limit")
    parser.add_argument("--out", default="benchmarks/results/fuzz.json")
    args = parser.parse_args()
    kinds = list(KINDS)
    work = Path(tempfile.mkdtemp(prefix="mrdistill-fuzz-"))
    seeds = write_seeds(work / "seeds")
    limit = args.time_limit + args.margin

    def one(i: int) -> dict:
        kind = kinds[i % len(kinds)]
        ops = draw_ops(args.seed, i)
        folder = work / "cases" / str(i)
        folder.mkdir(parents=True)
        name = "prepare.json" if kind == "manifest" else f"case{KINDS[kind]}"
        path = folder / name
        path.write_bytes(mutate(seeds[kind], ops))
        start = time.perf_counter()
        try:
            detail, status = read_as(kind, path, args.time_limit), "ok"
        except MrdistillError as exc:
            detail, status = str(exc), "error"
        except Exception as exc:  # noqa: BLE001 - exactly what this benchmark counts
            detail, status = f"{type(exc).__name__}: {exc}"[:300], "uncaught"
        seconds = time.perf_counter() - start
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
        return {"i": i, "kind": kind, "ops": ops, "status": status, "detail": detail, "seconds": seconds}

    counts: dict[str, Counter] = defaultdict(Counter)
    uncaught, over, times, unclear = [], [], [], []
    start = time.time()
    results = iter_time_limited(one, list(range(args.files)), 2 * limit, describe=lambda i: f"file {i}")
    for i, res in enumerate(results):
        kind = kinds[i % len(kinds)]
        if isinstance(res, TimeLimitExceeded):
            res = {"i": i, "kind": kind, "ops": draw_ops(args.seed, i), "status": "over_limit",
                   "detail": str(res), "seconds": 2 * limit}
        elif isinstance(res, MrdistillError):  # the worker crashed
            res = {"i": i, "kind": kind, "ops": draw_ops(args.seed, i), "status": "uncaught",
                   "detail": str(res), "seconds": float("nan")}
        elif res["status"] != "uncaught" and res["seconds"] > limit:
            res["status"] = "over_limit"
        counts[kind][res["status"]] += 1
        times.append((res["seconds"], res["kind"], res["i"]))
        if res["status"] == "uncaught":
            uncaught.append(res)
        if res["status"] == "over_limit":
            over.append(res)
        if res["status"] == "error" and UNCLEAR.search(res["detail"]):
            unclear.append(res)
        if (i + 1) % 500 == 0:
            print(f"{i + 1} files, {len(uncaught)} uncaught, {len(over)} over the limit, "
                  f"{time.time() - start:.0f} s", flush=True)
    total = Counter()
    for c in counts.values():
        total.update(c)
    times.sort(reverse=True)
    doc = {
        "command": run_command(),
        "machine": {"cpu": cpu_model(), "python": platform.python_version()},
        "files": args.files, "seed": args.seed, "time_limit_s": args.time_limit, "limit_s": limit,
        "wall_s": round(time.time() - start, 1),
        "totals": dict(total),
        "per_kind": {k: dict(v) for k, v in counts.items()},
        "slowest": [{"seconds": round(s, 3), "kind": k, "i": i} for s, k, i in times[:10]],
        "uncaught": uncaught, "over_limit": over,
        "unclear": {"count": len(unclear), "first": unclear[:20]},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("totals", "wall_s", "slowest")}, indent=1))
    return 1 if uncaught or over else 0


if __name__ == "__main__":
    sys.exit(main())
