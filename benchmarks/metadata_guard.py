"""What the time limit on fastMRI metadata costs: one folder indexed in-process vs in the worker.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/metadata_guard.py --files 50 --repeats 5 \
        --out benchmarks/results/metadata_guard.json

A folder of `--files` small fastMRI files (tests/data/format_fixtures.py, 4 slices of 32x24 each,
seed 0) is described with `inspect_file` in a loop in this process (no time limit: the old path)
and with `inspect_files` (one forked worker for the folder, a time limit per file: the path
`index_folder` takes on a cache miss), alternating, `--repeats` times each. The figure is the
median extra time per folder and per file. A cache hit (unchanged files) reads no metadata at all,
with or without the worker.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))
from format_fixtures import write_fastmri_folder  # noqa: E402

from mrdistill.data.fastmri_index import list_h5_files  # noqa: E402
from mrdistill.data.fastmri_io import inspect_file, inspect_files  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/metadata_guard.json")
    args = parser.parse_args()
    folder = write_fastmri_folder(Path(tempfile.mkdtemp(prefix="mrdistill-guard-")) / "f", args.files,
                                  slices=4)
    files = list_h5_files(folder)
    plain, guarded = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        a = [inspect_file(p) for p in files]
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        b = list(inspect_files(files))
        guarded.append(time.perf_counter() - start)
        assert a == b
    extra = statistics.median(guarded) - statistics.median(plain)
    doc = {
        "command": "OMP_NUM_THREADS=1 nice -n 5 python " + " ".join(sys.argv),
        "machine": {"cpu": cpu_model(), "python": platform.python_version()},
        "files": args.files, "repeats": args.repeats,
        "in_process_s": [round(t, 4) for t in plain], "worker_s": [round(t, 4) for t in guarded],
        "median_in_process_s": round(statistics.median(plain), 4),
        "median_worker_s": round(statistics.median(guarded), 4),
        "extra_per_folder_s": round(extra, 4), "extra_per_file_ms": round(1000 * extra / args.files, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
