"""Score checkpoints and zero-filled, per image, on the held-out real images (and the template).

The held-out images (`mrdistill.data.sources.HELDOUT`, docs/data.md "Held-out real images") are
real MR images from installed packages that no recorded training recipe sees: an abdomen, a
shoulder, a heavily T2-weighted small field of view, a 3 T head and a single subject's coronal T1
brain. Their k-space is simulated exactly as for the embedded corpus, with the data config the
first checkpoint was trained with (image size, mode, mask kind), at each acceleration asked for;
every image gets one fixed mask seeded by its name.

Usage (the demo's three checkpoints):
    python benchmarks/heldout_real.py --checkpoint teacher=runs/demo/teacher/checkpoints/best.pt \
        --checkpoint student=runs/demo/student/checkpoints/best.pt \
        --checkpoint distilled=runs/demo/distilled/checkpoints/best.pt \
        --accelerations 4 8 --template --out benchmarks/results/heldout/demo

Writes `heldout.json` (every row) and `heldout.md` (per image and model: PSNR / SSIM, and where a
model is below zero-filled); with `--template` also the template's test slabs (data.sources: [mni],
the demo's split) at each acceleration. Volume-level PSNR/SSIM as everywhere (data range = the
image's max; each held-out image is one volume).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mrdistill.atomic import atomic_write_text
from mrdistill.config import to_dict
from mrdistill.data.build import make_datasets
from mrdistill.data.datasets import heldout_dataset
from mrdistill.data.sources import HELDOUT
from mrdistill.errors import MrdistillError
from mrdistill.machine import cpu_model
from mrdistill.train.checkpoint import load_checkpoint, model_from_checkpoint, recorded_data
from mrdistill.train.evaluation import evaluate_models
from mrdistill.train.heldout import METRICS, heldout_config, heldout_markdown, heldout_rows

def score(models: dict, dataset, where: str, acceleration: float) -> list[dict]:
    """One row per (image or volume, model): PSNR and SSIM; zero-filled included."""
    return heldout_rows(evaluate_models({"zero-filled": None, **models}, dataset, metrics=METRICS),
                        where, acceleration)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--accelerations", type=float, nargs="+", default=[4.0, 8.0])
    ap.add_argument("--images", nargs="+", default=list(HELDOUT), help="held-out source names")
    ap.add_argument("--template", action="store_true", help="also score the template's test slabs")
    ap.add_argument("--seed", type=int, default=42, help="the data seed (test masks do not depend on it)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="folder for heldout.json and heldout.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models, recorded = {}, None
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--checkpoint expects NAME=PATH, got {item!r}")
        ckpt = load_checkpoint(path)
        models[name] = model_from_checkpoint(ckpt, path)
        data = recorded_data(ckpt, path)
        if data is None:
            raise SystemExit(f"{path}: the checkpoint records no data config")
        recorded = recorded or data
        if (data.image_size, data.mode, data.mask.kind) != (recorded.image_size, recorded.mode,
                                                             recorded.mask.kind):
            raise SystemExit(f"{path}: trained on other data (size, mode, mask) than the first checkpoint")
    assert recorded is not None
    start = time.perf_counter()
    rows: list[dict] = []
    for acc in args.accelerations:
        cfg = heldout_config(recorded, acc)
        rows += score(models, heldout_dataset(cfg, args.seed, tuple(args.images)), "held-out real images", acc)
        if args.template:
            tcfg = heldout_config(recorded, acc, sources=["mni"])
            rows += score(models, make_datasets(tcfg, args.seed)["test"], "template test slabs (mni)", acc)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoints": dict(c.partition("=")[::2] for c in args.checkpoint),
            "data": to_dict(heldout_config(recorded, args.accelerations[0])), "seed": args.seed,
            "threads": args.threads, "machine": f"{cpu_model()} ({platform.machine()})",
            "torch": torch.__version__, "seconds": round(seconds, 1)}
    atomic_write_text(out / "heldout.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    text = heldout_markdown(rows, list(models))
    atomic_write_text(out / "heldout.md", f"# Held-out real images\n\n```\n{json.dumps(meta, indent=1)}\n```\n\n{text}\n")
    print(text)


if __name__ == "__main__":
    try:
        main()
    except MrdistillError as exc:  # bad input: one line, exit code 2
        raise SystemExit(f"error: {exc}") from None
