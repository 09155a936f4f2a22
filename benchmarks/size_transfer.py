"""Do checkpoints trained at one image size still work at another? A control for
`measured_models.py`: the same checkpoints on the embedded test slices simulated at each size.

Usage (the checkpoints of a `measured_models.py` run, trained at 96 px):
    OMP_NUM_THREADS=1 python benchmarks/size_transfer.py --sizes 96,224 \\
        --checkpoint teacher=RUNS/seed42-teacher/checkpoints/best.pt ... \\
        --out benchmarks/results/measured_models_size_transfer

The test data config is the first checkpoint's recorded one (sources, mode, mask, slab, split)
with only `image_size` changed and no augmentation, so every size holds the same test slices.
Writes `<out>.json` and `<out>.md`: per size, zero-filled and each model (PSNR / SSIM, mean over
test volumes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mrdistill.atomic import atomic_write_text  # noqa: E402
from mrdistill.config import DataConfig, from_dict, to_dict  # noqa: E402
from mrdistill.data.build import make_datasets  # noqa: E402
from mrdistill.eval.report import summarise  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402
from mrdistill.train.checkpoint import load_checkpoint, model_from_checkpoint, recorded_data  # noqa: E402
from mrdistill.train.evaluation import evaluate_models  # noqa: E402

METRICS = ("psnr", "ssim")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--sizes", default="96,224")
    ap.add_argument("--seed", type=int, default=42, help="the data seed (test masks do not depend on it)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    models, recorded = {}, None
    for spec in args.checkpoint:
        name, _, path = spec.partition("=")
        ckpt = load_checkpoint(path)
        models[name] = model_from_checkpoint(ckpt, path)
        recorded = recorded or recorded_data(ckpt, path)
    if recorded is None:
        raise SystemExit("the first checkpoint records no data config (write it with a training run)")
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        raw = to_dict(recorded)
        raw.update(image_size=size, augment={}, labeled_train_slices=None)
        test = make_datasets(from_dict(DataConfig, raw, "data"), args.seed)["test"]
        summary = summarise(evaluate_models({"zero-filled": None, **models}, test, metrics=METRICS).per_volume)
        rows += [{"size": size, "model": n, "slices": len(test), **{m: s[m][0] for m in METRICS}}
                 for n, s in summary.items()]
        print(size, {r["model"]: round(r["psnr"], 2) for r in rows if r["size"] == size}, flush=True)
    doc = {"command": "OMP_NUM_THREADS=1 python benchmarks/size_transfer.py " + " ".join(sys.argv[1:]),
           "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads()}, "rows": rows}
    names = list(dict.fromkeys(r["model"] for r in rows))
    lines = ["# Checkpoints on the embedded test slices at other image sizes", "", f"`{doc['command']}`",
             "", f"Machine: {doc['machine']['cpu']}, {doc['machine']['threads']} thread(s). PSNR dB / SSIM, "
             "mean over test volumes.", "", "| size | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for size in dict.fromkeys(r["size"] for r in rows):
        cells = [next(f"{r['psnr']:.2f} / {r['ssim']:.3f}" for r in rows if r["size"] == size and r["model"] == n)
                 for n in names]
        lines.append(f"| {size} px | " + " | ".join(cells) + " |")
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
