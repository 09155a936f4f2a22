"""Do fastMRI's own tools read what mrdistill writes, and do the scores agree?

Usage (fastMRI's package is not a dependency; install it on the side without its dependencies):
    pip install --no-deps --target /tmp/fm fastmri runstats
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/fm python benchmarks/fastmri_compat.py

1. Writes a tiny fastMRI-layout validation folder (2 single-coil volumes, 64 x 48 k-space, 48 x 48
   ESC targets) and a prepared multi-coil folder (`mrdistill prepare`).
2. `mrdistill predict` with a small DC-CNN (seeded, untrained: only agreement matters), then
   `mrdistill evaluate --target-path --predictions-path`.
3. Scores the same prediction files with fastMRI's metric functions and `Metrics` aggregation
   (the loop of `fastmri/evaluate.py`), and reads the prepared files with fastMRI's `SliceDataset`
   and `VarNetDataTransform`.
Prints both sets of numbers and the largest relative difference; writes
benchmarks/results/fastmri_compat.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))
from format_fixtures import write_fastmri_folder, write_nifti  # noqa: E402

from mrdistill.cli.main import main as mrdistill  # noqa: E402
from mrdistill.models import build_model  # noqa: E402
from mrdistill.train.checkpoint import model_payload, save_checkpoint  # noqa: E402


def run(*args: object) -> None:
    code = mrdistill([str(a) for a in args])
    if code:
        raise SystemExit(f"mrdistill {args[0]} failed with exit code {code}")


def main() -> None:
    torch.set_num_threads(1)
    from fastmri import evaluate as fe  # noqa: PLC0415 - optional, installed on the side
    from fastmri.data import transforms
    from fastmri.data.mri_data import SliceDataset
    from fastmri.data.subsample import RandomMaskFunc
    from fastmri.data.transforms import VarNetDataTransform

    work = Path(tempfile.mkdtemp(prefix="mrdistill_compat_"))
    val = write_fastmri_folder(work / "singlecoil_val", 2, slices=3, height=64, width=48, recon=(48, 48))
    kwargs = {"cascades": 2, "convs": 3, "channels": 8, "in_channels": 2}
    ckpt = work / "dccnn.pt"
    save_checkpoint(ckpt, model_payload(build_model("dccnn", seed=0, **kwargs), "dccnn", kwargs))
    run("predict", val, "--checkpoint", ckpt, "--out", work / "pred", "--no-progress")
    run("evaluate", "--target-path", val, "--predictions-path", work / "pred", "--challenge", "singlecoil",
        "--no-progress")
    ours = json.loads((work / "pred" / "evaluation" / "metrics.json").read_text())["models"]["pred"]

    metrics = fe.Metrics(fe.METRIC_FUNCS)
    for tgt_file in sorted(val.iterdir()):  # the loop of fastmri/evaluate.py
        with h5py.File(tgt_file, "r") as target, h5py.File(work / "pred" / tgt_file.name, "r") as recons:
            t, r = target["reconstruction_esc"][()], recons["reconstruction"][()]
            t = transforms.center_crop(t, (t.shape[-1], t.shape[-1]))
            r = transforms.center_crop(r, (t.shape[-1], t.shape[-1]))
            metrics.push(t, r)
    theirs = {k.lower(): (float(np.asarray(v).ravel()[0]), float(2 * np.asarray(metrics.stddevs()[k]).ravel()[0]))
              for k, v in metrics.means().items() if k != "MSE"}
    rel = max(abs(theirs[m][0] - ours[m]["mean"]) / abs(theirs[m][0]) for m in theirs)

    write_nifti(work / "vol.nii.gz", shape=(32, 32, 8))
    run("prepare", work / "vol.nii.gz", "--out", work / "prep", "--mode", "complex", "--coils", "4",
        "--split-by", "volume", "--no-progress")
    ds = SliceDataset(work / "prep" / "train", challenge="multicoil", use_dataset_cache=False,
                      transform=VarNetDataTransform(RandomMaskFunc([0.08], [4], seed=0)))
    sample = ds[0]
    report = {
        "fastmri_metrics": {m: {"mean": v[0], "two_sd": v[1]} for m, v in theirs.items()},
        "mrdistill_metrics": {m: ours[m] for m in theirs},
        "max_relative_difference_of_means": rel,
        "fastmri_reads_prepared": {"slices": len(ds), "masked_kspace": list(sample.masked_kspace.shape),
                                   "target": list(sample.target.shape), "max_value": float(sample.max_value)},
    }
    print(json.dumps(report, indent=2))
    (ROOT / "benchmarks" / "results" / "fastmri_compat.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
