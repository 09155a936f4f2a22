"""Data-loading benchmark for fastMRI-layout HDF5: slices/s, peak memory vs file count, open time.

Usage: OMP_NUM_THREADS=1 python benchmarks/data_loading.py [--quick] [--workdir DIR]
Writes benchmarks/results/data_loading.json and .md (with the machine it ran on).

Files are synthetic but in the real layout and size: single-coil knee (20 slices, 640 x 368),
multi-coil knee (15 coils, 640 x 368), and small files (64 x 48) for the file-count tests. Every
memory and open-time measurement runs in a fresh child process (peak RSS from getrusage).
"Cold" reads evict each file from the OS page cache first (posix_fadvise DONTNEED), so they come
from the disk; "warm" reads come from the page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import h5py

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": model, "cores": str(os.cpu_count()), "ram_gib": f"{mem:.0f}",
            "python": platform.python_version(), "torch": torch.__version__, "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version, "threads": "1 (torch.set_num_threads(1))"}


def write_files(folder: Path, n: int, slices: int, coils: int, height: int, width: int) -> None:
    """n files of random complex k-space (values do not matter for I/O) with ESC/RSS targets."""
    from mrdistill.data.fastmri_io import ismrmrd_header_xml, write_fastmri_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = (slices, coils, height, width) if coils else (slices, height, width)
    recon = (min(320, height), min(320, width))
    for i in range(n):
        k = (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32))
        target = rng.random((slices, *recon), dtype=np.float32)
        write_fastmri_file(folder / f"file{i:05d}.h5", k.astype(np.complex64), target=target,
                           header_xml=ismrmrd_header_xml((height, width), recon,
                                                         width // 2 - 8, width - 17))


def evict(folder: Path) -> None:
    """Drop the folder's files from the page cache (clean pages only; no root needed)."""
    for p in folder.glob("*.h5"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def make_dataset(folder: Path, cache: str, coil_mode: str = "combine", split: str = "val"):
    from mrdistill.config import DataConfig, FastMRIConfig, MaskConfig
    from mrdistill.data.fastmri import FastMRISliceDataset
    from mrdistill.data.fastmri_index import index_folder

    vols = index_folder(folder, cache).volumes
    cfg = DataConfig(mode="complex", mask=MaskConfig(kind="random", acceleration=4.0),
                     fastmri=FastMRIConfig(coil_mode=coil_mode, cache_dir=cache))
    return FastMRISliceDataset(vols, cfg, split)


def throughput(folder: Path, cache: str, what: str, coil_mode: str, order: str, cold: bool,
               limit: int) -> dict[str, float]:
    """slices/s of raw h5py slice reads ("raw") or full Samples ("sample")."""
    import h5py

    ds = make_dataset(folder, cache, coil_mode)
    idx = np.arange(len(ds))
    if order == "random":
        idx = np.random.default_rng(0).permutation(idx)
    idx = idx[:limit]

    def read(i: int) -> None:
        if what == "raw":
            info = ds.volumes[int(ds.vol_ids[i])]
            with h5py.File(info.path, "r") as f:
                f["kspace"][int(ds.slice_ids[i])]
        else:
            ds[int(i)]

    read(int(idx[-1]))  # warm-up (FFT plans, lazy imports), not timed
    if cold:
        evict(folder)
    start = time.perf_counter()
    for i in idx:
        read(int(i))
    seconds = time.perf_counter() - start
    return {"slices": int(len(idx)), "seconds": seconds, "slices_per_s": len(idx) / seconds}


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM). getrusage's ru_maxrss is not used: Linux
    carries it over from the parent across fork + exec, so a child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: list[str]) -> None:
    """Entry of a measuring child process: prints one JSON line."""
    torch.set_num_threads(1)
    kind = args[0]
    if kind == "open":
        folder, cache = Path(args[1]), args[2]
        from mrdistill.data.fastmri_index import index_folder

        start = time.perf_counter()
        vols = index_folder(folder, cache).volumes
        out = {"files": len(vols), "seconds": time.perf_counter() - start}
    elif kind == "memory":
        folder, cache, items = Path(args[1]), args[2], int(args[3])
        import h5py  # noqa: F401  (imports before the baseline, so it measures data only)

        from mrdistill.data import fastmri  # noqa: F401

        base = peak_rss_mib()
        ds = make_dataset(folder, cache, split="train")
        after_index = peak_rss_mib()
        for i in np.random.default_rng(0).permutation(len(ds))[:items]:
            ds[int(i)]
        out = {"files": len(ds.volumes), "slices": len(ds), "items_read": items,
               "peak_rss_mib": peak_rss_mib(), "rss_before_index_mib": base,
               "rss_after_index_mib": after_index}
    else:
        folder, cache, what, coil_mode, order, cold, limit = args[1:8]
        out = throughput(Path(folder), cache, what, coil_mode, order, cold == "cold", int(limit))
    print(json.dumps(out))


def run_child(*args: object) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True,
                          text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller files (a smoke run)")
    parser.add_argument("--workdir", default=None, help="where the synthetic files go (default: a temp dir)")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    torch.set_num_threads(1)
    load_start = [round(x, 2) for x in os.getloadavg()]  # a shared machine: say how busy it was
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mrdistill_bench_"))
    q = args.quick
    sc, mc = work / "singlecoil", work / "multicoil"
    small = {n: work / f"small{n}" for n in (50, 500, 1000)}
    t0 = time.perf_counter()
    write_files(sc, 2 if q else 8, 20, 0, 640, 368)
    write_files(mc, 1 if q else 2, 4 if q else 8, 15, 640, 368)
    for n, folder in small.items():
        write_files(folder, n, 10, 0, 64, 48)
    print(f"files written in {time.perf_counter() - t0:.0f} s under {work}", flush=True)
    cache = str(work / "cache")
    results: dict[str, object] = {"machine": machine(), "command": "OMP_NUM_THREADS=1 python "
                                  "benchmarks/data_loading.py" + (" --quick" if q else "")}
    n_sc = 40 if q else 160
    rows = []
    for what, coil_mode, folder, order, cold, limit in [
        ("raw", "combine", sc, "sequential", "warm", n_sc), ("raw", "combine", sc, "random", "cold", n_sc),
        ("sample", "combine", sc, "random", "warm", n_sc), ("sample", "combine", sc, "random", "cold", n_sc),
        ("raw", "combine", mc, "random", "warm", 16), ("sample", "combine", mc, "random", "warm", 16),
        ("sample", "multi", mc, "random", "warm", 16),
    ]:
        r = run_child("throughput", folder, cache, what, coil_mode, order, cold, limit)
        rows.append({"data": folder.name, "read": what, "coil_mode": coil_mode if folder == mc else "-",
                     "order": order, "page_cache": cold, **r})
        print(rows[-1], flush=True)
    results["throughput"] = rows
    results["open"] = []
    for n, folder in small.items():
        for state in ("cold (no cache)", "warm (cache)"):
            c = str(work / f"opencache{n}")
            r = run_child("open", folder, c)
            results["open"].append({"files": n, "metadata_cache": state, **r})  # type: ignore[union-attr]
            print(results["open"][-1], flush=True)  # type: ignore[index]
    results["memory"] = []
    for n, folder in small.items():
        r = run_child("memory", folder, str(work / f"opencache{n}"), 200)
        results["memory"].append(r)  # type: ignore[union-attr]
        print(r, flush=True)
    r = run_child("memory", sc, cache, 40)
    results["memory"].append(r)  # type: ignore[union-attr]
    print(r, flush=True)
    results["load_average"] = {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]}
    write_results(results)


def write_results(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_loading.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = ["# Data loading (fastMRI-layout HDF5)", "",
             f"Command: `{results['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; Python {m['python']}, "
             f"torch {m['torch']}, h5py {m['h5py']} (HDF5 {m['hdf5']}); {m['threads']}. Load average "
             f"(1, 5, 15 min) at start {results['load_average']['start']}, at end "
             f"{results['load_average']['end']}: the machine is shared, so times vary between runs.", "",
             "## Slice loading throughput", "",
             "| data | read | coil mode | order | page cache | slices | slices/s |", "|---|---|---|---|---|---|---|"]
    for r in results["throughput"]:
        lines.append(f"| {r['data']} | {r['read']} | {r['coil_mode']} | {r['order']} | {r['page_cache']} | "
                     f"{r['slices']} | {r['slices_per_s']:.1f} |")
    lines += ["", "raw = one h5py `kspace[i]` read; sample = a full `Sample` (read, mask, coil handling, "
              "zero-filled image, target).", "", "## Opening a folder", "",
              "| files | metadata cache | seconds |", "|---|---|---|"]
    for r in results["open"]:
        lines.append(f"| {r['files']} | {r['metadata_cache']} | {r['seconds']:.3f} |")
    lines += ["", "## Peak memory (fresh process; VmHWM after imports, after indexing, after random slice reads)",
              "", "| files | slices | slices read | after imports (MiB) | after index (MiB) | peak (MiB) |",
              "|---|---|---|---|---|---|"]
    for r in results["memory"]:
        lines.append(f"| {r['files']} | {r['slices']} | {r['items_read']} | {r['rss_before_index_mib']:.0f} | "
                     f"{r['rss_after_index_mib']:.0f} | {r['peak_rss_mib']:.0f} |")
    (RESULTS / "data_loading.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
