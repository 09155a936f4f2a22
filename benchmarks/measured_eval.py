"""Score reconstructions on the real measured k-space, per image: zero-filled, CG-SENSE,
L1-wavelet (with sigpy) and any checkpoints, at 4x and 8x with fastMRI's masks.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/measured_eval.py [--coil-maps ratio|espirit] [--no-l1]
        [--checkpoint NAME=PATH ...] [--scale volume|slice] [--out benchmarks/results/measured_eval]

Needs `mrdistill prepare --from measured` first (or `--data FOLDER`). Images: pyqmri's 10 flip
angles of one in-vivo brain slice (13 coils, 224 x 224) and the twix phantom (2 coils, 160 x 160).
Masks: fastMRI's `random` sampler, 8 % centre at 4x, 4 % at 8x, seeded by the file name as
fastMRI validates, so every flip angle shares one mask. Metrics: fastMRI's PSNR and SSIM per image
(data range: the file's volume max over all flip angles). A checkpoint is run on the coils it was
trained for: models that take coil maps (MoDL) or estimate them (VarNet) get all coils and the
maps (`coil_mode: multi`), single-coil models (DC-CNN) the sensitivity-weighted combination
(`coil_mode: combine`), in the data mode (real/complex) the checkpoint records; `--scale slice` runs
checkpoints per slice on the embedded corpus' intensity scale (`SliceScaled`).
Writes `<out>.json` (every per-image row) and `<out>.md` (tables).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mrdistill.config import DataConfig, FastMRIConfig, MaskConfig  # noqa: E402
from mrdistill.data.coils import rss  # noqa: E402
from mrdistill.data.fastmri import FastMRISliceDataset  # noqa: E402
from mrdistill.data.fastmri_index import index_folder  # noqa: E402
from mrdistill.data.measured import measured_dir, read_measured_manifest  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402
from mrdistill.models.classical import ClassicalRecon  # noqa: E402
from mrdistill.train.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from mrdistill.models.base import ReconOutput, input_kind  # noqa: E402
from mrdistill.models.contract import ReconModule, declared  # noqa: E402
from mrdistill.physics.fft import ifft2c  # noqa: E402
from mrdistill.train.evaluation import Evaluation, evaluate_models  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {4: 0.08, 8: 0.04}  # fastMRI's centre fractions


def measured_dataset(folder: Path, accel: int, coil_mode: str, mode: str,
                     coil_maps: str) -> FastMRISliceDataset:
    """The measured files of `folder` as a test set at `accel` (fastMRI's random mask, centre
    `SETTINGS[accel]`, seeded by the file name), volume-normalised (targets in [0, 1])."""
    cfg = DataConfig(mode=mode, coil_maps=coil_maps,
                     mask=MaskConfig(kind="random", acceleration=accel, center_fraction=SETTINGS[accel]),
                     fastmri=FastMRIConfig(challenge="multicoil", coil_mode=coil_mode, cache_dir=""))
    volumes = index_folder(folder, "").volumes
    return FastMRISliceDataset(volumes, cfg, "test", challenge="multicoil")


def checkpoint_entry(name: str, path: str | Path) -> tuple[str, nn.Module, str, str]:
    """(name, model, coil mode, data mode) of a checkpoint: models that take coil maps (MoDL) or
    estimate them (VarNet) get all coils ("multi"), single-coil ones the combination ("combine")."""
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, path)
    data = ckpt.get("data") or {}
    mode = data.get("mode", "complex")
    takes_coils = declared(model).accepts_smaps or ckpt["model_name"] == "varnet"
    return name, model, ("multi" if takes_coils else "combine"), mode


def _checkpoint(spec: str) -> tuple[str, nn.Module, str, str]:
    name, _, path = spec.partition("=")
    if not path:
        raise SystemExit(f"--checkpoint wants NAME=PATH, got {spec!r}")
    return checkpoint_entry(name, path)


class SliceScaled(ReconModule):
    """A k-space model run on the intensity scale the embedded corpus trains on.

    Embedded training slices are normalised per slice (target max 1, `datasets.slice_record`);
    measured files per volume (the `max` of all flip angles), so a dark flip angle reaches a
    network at a fraction of the scale it learned. This divides each slice's k-space by the
    largest zero-filled magnitude (known at inference; on the embedded training slices
    target max / zero-filled max has a median of about 1) and multiplies the output back, so the
    scores stay in the file's units. Coil maps (unitless) pass through unchanged.
    forward(kspace complex64 (N, C, H, W), mask, *, smaps=None) -> ReconOutput.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if input_kind(model) != "kspace":
            raise ValueError("SliceScaled wraps k-space models")
        self.model = model
        for key, value in asdict(declared(model)).items():
            setattr(self, key, value)
        self.exportable = False

    def forward(self, kspace: Tensor, mask: Tensor, *, smaps: Tensor | None = None,
                return_features: bool = False) -> ReconOutput:
        scale = zero_filled_peak(kspace)
        maps = {} if smaps is None else {"smaps": smaps}
        out = self.model(kspace / scale, mask, return_features=return_features, **maps)
        return ReconOutput(out.image * scale, out.features)


def zero_filled_peak(kspace: Tensor) -> Tensor:
    """Largest zero-filled magnitude per slice (RSS over coils): complex (N, C, H, W) -> float32
    (N, 1, 1, 1), at least 1e-12."""
    return rss(ifft2c(kspace), dim=1).amax(dim=(-2, -1)).reshape(-1, 1, 1, 1).clamp_min(1e-12)


def baseline_evaluation(folder: Path, accel: int, coil_maps: str, l1: bool = True) -> Evaluation:
    """Zero-filled, CG-SENSE and (with `l1` and sigpy) L1-wavelet on all coils at `accel`."""
    base = measured_dataset(folder, accel, "multi", "complex", coil_maps)
    if not l1:
        return evaluate_models({"zero-filled": None, "CG-SENSE": ClassicalRecon("cg_sense")}, base,
                               baselines=False)
    return evaluate_models({"zero-filled": None}, base)


def model_evaluation(folder: Path, accel: int, coil_maps: str, entry: tuple[str, nn.Module, str, str],
                     scale: str = "volume") -> Evaluation:
    """One `checkpoint_entry` scored at `accel`; scale "slice" runs the model through
    `SliceScaled` (the name gets " (slice scale)")."""
    name, model, coil_mode, mode = entry
    if scale == "slice":
        model, name = SliceScaled(model), f"{name} (slice scale)"
    return evaluate_models({name: model}, measured_dataset(folder, accel, coil_mode, mode, coil_maps),
                           baselines=False)


def evaluation_rows(ev: Evaluation, accel: int) -> list[dict]:
    """Per-image rows {acceleration, model, volume, slice, metrics...} of an evaluation."""
    return [{"acceleration": accel, **r} for r in ev.per_slice]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="measured folder (default: mrdistill's cache)")
    ap.add_argument("--coil-maps", choices=("ratio", "espirit"), default="ratio")
    ap.add_argument("--no-l1", action="store_true", help="leave out the L1-wavelet row (slow)")
    ap.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH (repeatable)")
    ap.add_argument("--scale", choices=("volume", "slice"), default="volume",
                    help="the file's volume scale, or per slice (SliceScaled)")
    ap.add_argument("--accelerations", default="4,8")
    ap.add_argument("--out", default=str(RESULTS / "measured_eval"))
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    folder = Path(args.data) if args.data else measured_dir()
    read_measured_manifest(folder)
    models = [_checkpoint(s) for s in args.checkpoint]
    rows: list[dict] = []
    seconds: dict[str, float] = {}
    for accel in [int(a) for a in args.accelerations.split(",")]:
        t = time.perf_counter()
        evals = [baseline_evaluation(folder, accel, args.coil_maps, not args.no_l1)]
        evals += [model_evaluation(folder, accel, args.coil_maps, entry, args.scale) for entry in models]
        for e in evals:
            rows += evaluation_rows(e, accel)
            for name, ms in e.ms_per_slice.items():
                seconds[f"{accel}x {name}"] = round(ms / 1000, 2)
        print(f"{accel}x done in {time.perf_counter() - t:.0f} s")
    names = list(dict.fromkeys(r["model"] for r in rows))
    doc = {"command": "OMP_NUM_THREADS=1 python benchmarks/measured_eval.py " + " ".join(sys.argv[1:]),
           "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()},
           "coil_maps": args.coil_maps, "masks": {f"{a}x": {"kind": "random", "center_fraction": c}
                                                  for a, c in SETTINGS.items()},
           "seconds_per_slice": seconds, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    lines = [f"# Measured k-space, per image ({args.coil_maps} coil maps)", "",
             f"`{doc['command']}` on {doc['machine']['cpu']}, {doc['machine']['threads']} thread(s).", ""]
    for accel in sorted({r["acceleration"] for r in rows}):
        lines += [f"## {accel}x (fastMRI random mask, centre {SETTINGS[accel]:g}); PSNR dB / SSIM", "",
                  "| image | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        images = list(dict.fromkeys((r["volume"], r["slice"]) for r in rows if r["acceleration"] == accel))
        table = {(r["volume"], r["slice"], r["model"]): r for r in rows if r["acceleration"] == accel}
        for vol, s in images:
            cells = [f"{table[(vol, s, n)]['psnr']:.2f} / {table[(vol, s, n)]['ssim']:.3f}"
                     if (vol, s, n) in table else "-" for n in names]
            lines.append(f"| {vol} {s} | " + " | ".join(cells) + " |")
        means = []
        for n in names:
            got = [r for r in rows if r["acceleration"] == accel and r["model"] == n and r["volume"] != "twix_gre"]
            means.append(f"{np.mean([r['psnr'] for r in got]):.2f} / {np.mean([r['ssim'] for r in got]):.3f}"
                         if got else "-")
        lines += ["| mean of pyqmri's 10 | " + " | ".join(means) + " |", ""]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
