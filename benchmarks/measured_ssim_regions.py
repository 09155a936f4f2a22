"""Where SSIM is won and lost on the measured brain: foreground against background windows.

On pyqmri's brain at 4x, fine-tuned models beat zero-filled in PSNR on the held-out flip angles
but not always in SSIM. This splits fastMRI's SSIM (`eval.metrics.ssim_map`, 7x7 windows, data
range the volume max) by where the window sits: its centre pixel in the anatomy (target at least
`--threshold` of the slice's target max) or in the background, for zero-filled (RSS), CG-SENSE,
the fully sampled k-space combined through the coil maps (what a model that reconstructs one
image through the maps would give if it were perfect) and any checkpoints. The target is the RSS
of the fully sampled coils, as fastMRI's multi-coil target is.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/measured_ssim_regions.py --data /tmp/mcache/measured \\
        [--checkpoint NAME=PATH ...] [--flips 0,9] --out benchmarks/results/measured_ssim_regions
Writes `<out>.json` and `<out>.md` (4x; mean over the chosen flip angles).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from measured_eval import (SETTINGS, _checkpoint, baseline_evaluation, measured_dataset,  # noqa: E402
                           model_evaluation)
from measured_models import CEILING, ceiling_image  # noqa: E402
from measured_report import BRAIN  # noqa: E402
from mrdistill.data.measured import measured_dir, read_measured_manifest  # noqa: E402
from mrdistill.eval.metrics import ssim_map  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402

ACCEL = 4
HALF = 3  # ssim_map keeps windows lying inside the image: its output is the image less 3 px a side


def region_ssim(target: torch.Tensor, image: torch.Tensor, peak: float, threshold: float) -> dict[str, float]:
    """SSIM of one slice, all windows and split by the centre pixel: target, image float (H, W)."""
    smap = ssim_map(target[None, None].double(), image[None, None].double(), peak)[0, 0]
    centre = target[HALF:-HALF, HALF:-HALF]
    fg = centre >= threshold * float(target.max())
    return {"ssim": float(smap.mean()), "ssim_foreground": float(smap[fg].mean()),
            "ssim_background": float(smap[~fg].mean()), "background_share": float((~fg).double().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="measured folder (default: mrdistill's cache)")
    ap.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH (repeatable)")
    ap.add_argument("--flips", default="0,9", help="the brain's flip angles to average")
    ap.add_argument("--threshold", type=float, default=0.1, help="foreground: target >= this x slice max")
    ap.add_argument("--out", default="benchmarks/results/measured_ssim_regions")
    args = ap.parse_args()
    if not 0 < args.threshold < 1:
        ap.error(f"--threshold must lie in (0, 1), got {args.threshold}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    folder = Path(args.data) if args.data else measured_dir()
    read_measured_manifest(folder)
    flips = [int(f) for f in args.flips.split(",")]
    evals = [baseline_evaluation(folder, ACCEL, "ratio", l1=False)]
    evals += [model_evaluation(folder, ACCEL, "ratio", _checkpoint(spec)) for spec in args.checkpoint]
    multi = measured_dataset(folder, ACCEL, "multi", "complex", "ratio")
    rows = []
    for i, (v, s) in enumerate(multi.items()):
        if multi.volumes[v].name != BRAIN or s not in flips:
            continue
        sample = multi[i]
        target, peak = sample.target[0], float(sample.max_value)
        images = {CEILING: ceiling_image(multi, i)}
        for ev in evals:
            for name, recons in ev.recons.items():
                rec = recons[BRAIN]
                images[name] = rec.prediction[rec.slices.index(s)]
        rows += [{"model": n, "slice": s, **region_ssim(target, im, peak, args.threshold)} for n, im in images.items()]
    names = list(dict.fromkeys(r["model"] for r in rows))
    keys = ("ssim", "ssim_foreground", "ssim_background")
    means = {n: {k: float(np.mean([r[k] for r in rows if r["model"] == n])) for k in (*keys, "background_share")}
             for n in names}
    doc = {"command": "OMP_NUM_THREADS=1 python benchmarks/measured_ssim_regions.py " + shlex.join(sys.argv[1:]),
           "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads()}, "acceleration": ACCEL,
           "mask_center_fraction": SETTINGS[ACCEL], "flips": flips, "threshold": args.threshold,
           "means": means, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    share = np.mean([m["background_share"] for m in means.values()])
    lines = [f"# SSIM by region, measured brain at {ACCEL}x, flip angles {args.flips}", "",
             f"`{doc['command']}` on {doc['machine']['cpu']}, {doc['machine']['threads']} thread(s). "
             f"Foreground: window centre >= {args.threshold:g} x the slice's target max; "
             f"background: the other {share:.0%} of the windows.", "",
             "| reconstruction | SSIM | foreground | background |", "|---|---|---|---|"]
    lines += [f"| {n} | " + " | ".join(f"{means[n][k]:.3f}" for k in keys) + " |" for n in names]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
