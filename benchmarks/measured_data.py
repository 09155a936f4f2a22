"""The real measured k-space: download, hash check, conversion (with twixtools on the real twix
file), noise levels, and ESPIRiT maps against the coil maps pyqmri ships.

Usage: OMP_NUM_THREADS=1 python benchmarks/measured_data.py [--cache DIR] [--contrasts 0,4,9]
Writes benchmarks/results/measured_data.json and .md (with the machine it ran on) and a PNG of
the converted images (benchmarks/results/measured_data.png) to look at.

`--cache` defaults to a fresh temporary folder, so the pip download is timed too. ESPIRiT runs on
the fully sampled k-space of each chosen flip angle with sigpy's default 24 x 24 calibration
block; agreement is measured inside the head (the mean RSS image over the flip angles > 10 % of
its max, one region for all) after removing the
per-pixel common phase (`physics.espirit.compare_maps`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mrdistill.data.measured import ARCHIVES, PYQMRI_COILS, prepare_measured  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402
from mrdistill.physics.espirit import compare_maps, espirit_maps  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _png(folder: Path, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with h5py.File(folder / ARCHIVES["pyqmri"].output) as f:
        vfa = f["reconstruction_rss"][()]
    with h5py.File(folder / ARCHIVES["twixtools"].output) as f:
        gre = f["reconstruction_rss"][()]
    fig, ax = plt.subplots(1, 4, figsize=(16, 4.4))
    for a, (img, title) in zip(ax, [(vfa[0], "pyqmri flip angle 0"), (vfa[4], "pyqmri flip angle 4"),
                                    (vfa[9], "pyqmri flip angle 9"), (gre[0], "twix gre (OS removed)")]):
        a.imshow(img, cmap="gray")
        a.set_title(title)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one)")
    ap.add_argument("--contrasts", default="0,4,9", help="pyqmri flip angles to run ESPIRiT on")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = None if args.cache else tempfile.TemporaryDirectory(prefix="mrdistill-measured-")
    cache = Path(args.cache or tmp.name)  # type: ignore[union-attr]
    start = time.perf_counter()
    folder, manifest = prepare_measured(cache_dir=cache, log=print)
    prepare_s = time.perf_counter() - start
    _png(folder, RESULTS / "measured_data.png")

    with h5py.File(folder / ARCHIVES["pyqmri"].output) as f:
        kspace, target = f["kspace"][()], f["reconstruction_rss"][()]
    shipped = np.load(folder / PYQMRI_COILS)
    # One head region for every flip angle: at 1 degree the image is so faint that a threshold on
    # its own RSS would let the noise background (where maps mean nothing) in.
    mean = target.mean(axis=0)
    region = mean > 0.1 * mean.max()
    espirit = []
    for c in [int(x) for x in args.contrasts.split(",")]:
        t = time.perf_counter()
        maps = espirit_maps(torch.from_numpy(kspace[c]), calib_width=24).numpy()
        seconds = time.perf_counter() - t
        cmp = compare_maps(maps, shipped, region)
        espirit.append({"flip_angle_index": c, "seconds": round(seconds, 1), **cmp})
        print(f"flip angle {c}: median |S| correlation {cmp['median_magnitude_correlation']:.4f}, "
              f"median per-coil NRMSE {cmp['median_nrmse']:.4f}, all-coil NRMSE {cmp['nrmse_all']:.4f} "
              f"({seconds:.1f} s)")
    results = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/measured_data.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": 1},
        "prepare_seconds": round(prepare_s, 1), "downloaded": args.cache is None,
        "manifest": manifest, "espirit_vs_shipped": espirit,
        "espirit_settings": {"calib_width": 24, "kernel_width": 6, "thresh": 0.02, "crop": 0.0,
                             "region": "mean RSS image over the 10 flip angles > 10 % of its max"},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "measured_data.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Measured k-space: download, conversion, noise, ESPIRiT agreement", "",
             f"`{results['command']}` on {results['machine']['cpu']} ({os.cpu_count()} cores, 1 thread).",
             f"prepare --from measured (pip download of both sdists, hash check, conversion): "
             f"{prepare_s:.1f} s.", "",
             "| file | from | sha256 | k-space (S, C, H, W) | FOV mm | noise std / max (median coil) |",
             "|---|---|---|---|---|---|"]
    for e in manifest["files"]:
        fov = "-" if e["fov_mm"] is None else " x ".join(f"{v:g}" for v in e["fov_mm"])
        lines.append(f"| {e['file']} | {e['package']} | `{e['sha256']}` | {tuple(e['kspace_shape'])} | "
                     f"{fov} | {e['noise_std_over_max']:.4f} |")
    lines += ["", "Noise std per coil (per real/imaginary component, k-space corners):", ""]
    for e in manifest["files"]:
        lines.append(f"- {e['file']}: " + ", ".join(f"{x:.3g}" for x in e["noise_std_per_coil"]))
    lines += ["", "ESPIRiT (sigpy, 24 x 24 calibration, kernel 6) vs the maps pyqmri ships, inside "
              "the head, per-pixel common phase removed:", "",
              "| flip angle | median \\|S\\| correlation | min \\|S\\| correlation | median per-coil NRMSE | all-coil NRMSE | pixels | s |",
              "|---|---|---|---|---|---|---|"]
    for e in espirit:
        lines.append(f"| {e['flip_angle_index']} | {e['median_magnitude_correlation']:.4f} | "
                     f"{min(e['magnitude_correlation']):.4f} | {e['median_nrmse']:.4f} | "
                     f"{e['nrmse_all']:.4f} | {e['pixels']} | {e['seconds']} |")
    (RESULTS / "measured_data.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
