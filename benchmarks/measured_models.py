"""Models trained on the embedded corpus, scored on real measured k-space (issue 25, item 4).

Per seed: a DC-CNN teacher (D5C5, 32 channels, residual cascades, complex 2-channel input,
`data.mode: complex`), a plain student (D3C5) and a distilled student (the same optimizer steps;
one stage of L1 to the target plus imitation of the teacher, weight 1.0: the recipe of
configs/front_dccnn.yaml), trained in-process on the wider embedded sources with fastMRI's random
masks (4x, centre 0.08). Each checkpoint is then scored per image on the measured k-space
(`benchmarks/measured_eval.py`: pyqmri's 10 flip angles of one in-vivo brain slice, 13 coils,
224 x 224, and the twix phantom) at 4x and 8x next to zero-filled, CG-SENSE and L1-wavelet.
DC-CNN is single-coil: it gets the sensitivity-weighted coil combination.

Intensity convention (`--scales`): embedded slices are normalised per slice (target max 1),
measured files per volume (max over the 10 flip angles; the darkest flip angle peaks at 0.27).
"volume" feeds the file's scale as `predict` does; "slice" divides each slice by its largest
zero-filled magnitude (known at inference) and scales the output back (`SliceScaled`). The JSON
records the target max / zero-filled max ratio of both data sets, to show how close that is.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/measured_models.py --seeds 42 --teacher-epochs 10 \\
        --epochs 10 --data /tmp/mcache/measured --out benchmarks/results/measured_models
    python benchmarks/measured_models.py --smoke --data DIR --out /tmp/mm_smoke   # < 1 min
Writes `<out>.json` (every per-image row, the runs, the machine), `<out>.md` (mean +- sd over seeds
per model next to the classical rows; which models beat zero-filled and CG-SENSE) and `<out>.png`
(4x, first seed: target, zero-filled, CG-SENSE, teacher, student, distilled, with error maps).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from measured_eval import (SETTINGS, baseline_evaluation, checkpoint_entry, evaluation_rows,  # noqa: E402
                           measured_dataset, model_evaluation, zero_filled_peak)
from mrdistill.atomic import atomic_write_text  # noqa: E402
from mrdistill.config import DataConfig, RunConfig, deep_merge, from_dict  # noqa: E402
from mrdistill.data.build import make_datasets  # noqa: E402
from mrdistill.data.measured import measured_dir, read_measured_manifest  # noqa: E402
from mrdistill.data.coils import combine_coils  # noqa: E402
from mrdistill.demo import SITE_STAGES  # noqa: E402
from mrdistill.eval.metrics import slice_metrics  # noqa: E402
from mrdistill.physics.fft import ifft2c  # noqa: E402
from mrdistill.train.evaluation import evaluate_models  # noqa: E402
from mrdistill.eval.figures import save_panel  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402
from mrdistill.train.budget import matched_budget  # noqa: E402
from mrdistill.train.runs import distill_run, train_run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WIDE = ["mni", "dipy_s0", "nibabel_epi", "dipy_aniso", "dipy_piesno", "nibabel_anat"]
MODELS = ("teacher", "student", "distilled")
TEACHER = {"cascades": 5, "convs": 5, "channels": 32, "in_channels": 2, "residual": True}
STUDENT = {"cascades": 5, "convs": 3, "channels": 32, "in_channels": 2, "residual": True}
SMOKE = {"teacher": {"cascades": 2, "convs": 3, "channels": 8, "in_channels": 2, "residual": True},
         "student": {"cascades": 2, "convs": 2, "channels": 4, "in_channels": 2, "residual": True}}
BRAIN = "pyqmri_vfa"  # the in-vivo brain; the means are over its flip angles
FIGURE_SLICE = 5
METRICS = ("psnr", "ssim", "nmse")
COMBINED_ZF = "zero-filled, coil-combined (DC-CNN input)"
CEILING = "full k-space, coil-combined (DC-CNN ceiling)"


def data_dict(args: argparse.Namespace, labeled: int | None) -> dict:
    """The embedded training data: complex images, fastMRI's random mask at 4x (centre 0.08)."""
    raw = {"sources": args.sources, "image_size": args.image_size, "mode": "complex", "slab": 4,
           "max_train_slices": args.train_slices, "max_eval_slices": args.eval_slices,
           "labeled_train_slices": labeled,
           "mask": {"kind": "random", "acceleration": 4.0, "center_fraction": SETTINGS[4]}}
    return deep_merge(raw, copy.deepcopy(args.data_json))


def optim(epochs: int, batch: int) -> dict:
    """Adam at 1e-3, the lr x 0.3 after two thirds of the epochs (the front's schedule)."""
    return {"epochs": epochs, "batch_size": batch, "step_size": max(1, epochs * 2 // 3), "gamma": 0.3,
            "channels_last": False}


def peak_ratio(dataset) -> float:
    """Median over a data set's slices of target max / zero-filled max (the intensity anchor of
    `SliceScaled`): dataset yields `Sample`s with single-coil k-space and a target."""
    ratios = []
    for i in range(len(dataset)):
        s = dataset[i]
        ratios.append(float(s.target.max() / zero_filled_peak(s.kspace[None]).squeeze()))
    return statistics.median(ratios)


def train_seed(args: argparse.Namespace, seed: int, runs: Path) -> dict:
    """Teacher, plain and distilled student of one seed -> {name: checkpoint, "runs": facts}."""
    kwargs = SMOKE if args.smoke else {"teacher": TEACHER, "student": STUDENT}
    tdata = from_dict(DataConfig, data_dict(args, None), "data")
    sdata = from_dict(DataConfig, data_dict(args, args.labeled), "data")
    tsets = make_datasets(tdata, seed)
    ssets = tsets if sdata == tdata else make_datasets(sdata, seed)
    labeled, seen = len(ssets["train"]), len(ssets["train"]) + len(ssets.get("unlabeled", []))
    student_optim = optim(args.epochs, args.batch)
    stages, distill_optim = matched_budget(copy.deepcopy(SITE_STAGES), student_optim, labeled, seen)
    common = {"out_dir": str(runs), "seed": seed, "device": "cpu", "progress": False}
    specs = {
        "teacher": ({**common, "name": f"seed{seed}-teacher", "data": data_dict(args, None),
                     "model": {"name": "dccnn", "kwargs": kwargs["teacher"]},
                     "optim": optim(args.teacher_epochs, args.batch)}, tsets),
        "student": ({**common, "name": f"seed{seed}-student", "data": data_dict(args, args.labeled),
                     "model": {"name": "dccnn", "kwargs": kwargs["student"]}, "optim": student_optim}, ssets),
    }
    out: dict = {"runs": {}}
    teacher = None
    for name, (raw, sets) in specs.items():
        t = time.perf_counter()
        result = train_run(from_dict(RunConfig, raw, name), overwrite=True, datasets=sets)
        teacher = result.model if name == "teacher" else teacher
        out[name] = result.run_dir / "checkpoints" / "best.pt"
        out["runs"][name] = {"seconds": round(time.perf_counter() - t, 1), "model": raw["model"],
                             "optim": raw["optim"], "train_slices": len(sets["train"])}
    raw = {**common, "name": f"seed{seed}-distilled", "data": data_dict(args, args.labeled),
           "model": {"name": "dccnn", "kwargs": kwargs["student"]}, "optim": distill_optim,
           "distill": {"teacher": str(out["teacher"]), "stages": stages}}
    t = time.perf_counter()
    result = distill_run(from_dict(RunConfig, raw, "distilled"), overwrite=True, datasets=ssets, teacher=teacher)
    out["distilled"] = result.run_dir / "checkpoints" / "best.pt"
    out["runs"]["distilled"] = {"seconds": round(time.perf_counter() - t, 1), "model": raw["model"],
                                "optim": distill_optim, "stages": stages, "train_slices": labeled,
                                "undersampled_only_slices": seen - labeled}
    out["train_peak_ratio"] = peak_ratio(tsets["train"])
    return out


def combined_rows(folder: Path, accel: int, coil_maps: str) -> list[dict]:
    """The two references of a single-coil model on these files, per image: its own input (the
    zero-filled coil combination) and its ceiling (the fully sampled k-space combined with the
    maps the undersampled calibration region gives), both scored against the RSS target."""
    ev = evaluate_models({COMBINED_ZF: None}, measured_dataset(folder, accel, "combine", "complex", coil_maps),
                         metrics=METRICS, baselines=False)
    rows = evaluation_rows(ev, accel)
    multi = measured_dataset(folder, accel, "multi", "complex", coil_maps)
    for i, (v, s) in enumerate(multi.items()):
        info, sample = multi.volumes[v], multi[i]
        full = multi.read_slice(info, s)[0] / multi.volume_scale(v)
        image = combine_coils(ifft2c(full), sample.smaps).abs()[0]
        rows.append({"acceleration": accel, "model": CEILING, "volume": info.name, "slice": s,
                     **slice_metrics(sample.target[0], image, float(sample.max_value), names=METRICS)})
    return rows


def steps(run: dict, batch: int) -> int:
    """Optimizer steps of a plain run: epochs x batches of its training slices."""
    return run["optim"]["epochs"] * math.ceil(run["train_slices"] / batch)


def mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def brain_mean(rows: list[dict], accel: int, model: str, metric: str, seed: int | None = None) -> float:
    got = [r[metric] for r in rows if r["acceleration"] == accel and r["model"] == model
           and r["volume"] == BRAIN and (seed is None or r.get("seed") == seed)]
    return float(np.mean(got))


def markdown(doc: dict) -> str:
    """Per acceleration: the classical rows and every model (mean ± sd over seeds of the mean over
    the brain's 10 flip angles), whether it beats zero-filled and CG-SENSE, then per image."""
    rows, seeds = doc["rows"], doc["seeds"]
    models = list(dict.fromkeys(r["model"] for r in rows if r.get("seed") is not None))
    base = list(dict.fromkeys(r["model"] for r in rows if r.get("seed") is None))
    extra = f", data {json.dumps(doc['data_json'])}" if doc.get("data_json") else ""
    lines = ["# Models trained on the embedded corpus, scored on measured k-space", "",
             f"`{doc['command']}`", "",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['threads']} thread(s), torch "
             f"{doc['machine']['torch']}. Seeds: {', '.join(map(str, seeds))}. Training: "
             f"{', '.join(doc['sources'])} at {doc['image_size']} px, data.mode complex, random mask "
             f"4x centre 0.08{extra}; teacher {doc['steps']['teacher']} steps, students "
             f"{doc['steps']['student']} steps each. Test: pyqmri's in-vivo brain (10 flip angles, "
             f"13 coils, 224 x 224; DC-CNN gets the coil combination with {doc['coil_maps']} maps) "
             f"and the twix phantom. Target max / zero-filled max, median: embedded training "
             f"slices {doc['peak_ratio']['train']:.2f}, measured brain "
             f"{doc['peak_ratio']['measured']:.2f}.", ""]
    for accel in doc["accelerations"]:
        zf, cg = brain_mean(rows, accel, "zero-filled", "psnr"), brain_mean(rows, accel, "CG-SENSE", "psnr")
        lines += [f"## {accel}x (fastMRI random mask, centre {SETTINGS[accel]:g}): mean of the brain's "
                  "10 flip angles", "",
                  "| model | PSNR dB | SSIM | beats zero-filled (PSNR) | beats CG-SENSE (PSNR) |",
                  "|---|---|---|---|---|"]
        for name in base:
            lines.append(f"| {name} | {brain_mean(rows, accel, name, 'psnr'):.2f} | "
                         f"{brain_mean(rows, accel, name, 'ssim'):.3f} | | |")
        for name in models:
            p = [brain_mean(rows, accel, name, "psnr", s) for s in seeds]
            q = [brain_mean(rows, accel, name, "ssim", s) for s in seeds]
            wins = lambda ref: f"{sum(v > ref for v in p)} of {len(p)} seeds"  # noqa: E731
            lines.append(f"| {name} | {mean_sd(p)} | {np.mean(q):.3f} | {wins(zf)} | {wins(cg)} |")
        lines += ["", f"Per image ({accel}x), PSNR dB, models averaged over seeds:", "",
                  "| image | " + " | ".join(base + models) + " |", "|---" * (len(base + models) + 1) + "|"]
        images = list(dict.fromkeys((r["volume"], r["slice"]) for r in rows if r["acceleration"] == accel))
        for vol, s in images:
            cells = [np.mean([r["psnr"] for r in rows if r["acceleration"] == accel and r["model"] == n
                              and r["volume"] == vol and r["slice"] == s]) for n in base + models]
            lines.append(f"| {vol} {s} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def figure(path: Path, evals: dict, scale: str) -> None:
    """4x, first seed, one flip angle: target, zero-filled, CG-SENSE and the three models."""
    suffix = "" if scale == "volume" else " (slice scale)"
    names = {"zero-filled": "zero-filled", "CG-SENSE": "CG-SENSE",
             **{m: m + suffix for m in MODELS}}
    recon = evals["zero-filled"].recons["zero-filled"][BRAIN]
    pos = recon.slices.index(FIGURE_SLICE) if FIGURE_SLICE in recon.slices else 0
    images = {label: evals[label].recons[key][BRAIN].prediction[pos].numpy() for label, key in names.items()}
    save_panel(path, recon.target[pos].numpy(), images, error_for=[n for n in images if n != "zero-filled"],
               title=f"{BRAIN} flip angle {recon.slices[pos]}, 4x ({scale} scale)")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="42", help="comma-separated")
    ap.add_argument("--epochs", type=int, default=10, help="plain student epochs (distilled: same steps)")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--sources", default=",".join(WIDE), help="comma-separated embedded sources")
    ap.add_argument("--train-slices", type=int, default=80)
    ap.add_argument("--eval-slices", type=int, default=16, help="embedded validation slices")
    ap.add_argument("--labeled", type=int, default=None,
                    help="students' fully sampled slices (the rest undersampled-only); default all")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--data-json", type=json.loads, default={},
                    help='DataConfig keys merged over the training data, e.g. \'{"noise_std": 0.01}\'')
    ap.add_argument("--scales", default="volume,slice", help="volume and/or slice (see the docstring)")
    ap.add_argument("--accelerations", default="4,8")
    ap.add_argument("--coil-maps", choices=("ratio", "espirit"), default="ratio")
    ap.add_argument("--no-l1", action="store_true", help="leave out the L1-wavelet row (slow)")
    ap.add_argument("--data", default=None, help="measured folder (default: mrdistill's cache)")
    ap.add_argument("--runs", default="/tmp/mrdistill_measured_models", help="training run folders")
    ap.add_argument("--out", default=str(RESULTS / "measured_models"))
    ap.add_argument("--smoke", action="store_true", help="tiny models, data and budget; 4x, no L1")
    args = ap.parse_args()
    if args.smoke:
        args.image_size, args.train_slices, args.eval_slices, args.epochs = 32, 8, 4, 1
        args.teacher_epochs, args.accelerations, args.no_l1, args.batch = 1, "4", True, 4
    args.teacher_epochs = args.teacher_epochs or args.epochs
    args.sources = [s for s in args.sources.split(",") if s]
    args.scales = [s for s in args.scales.split(",") if s]
    if not set(args.scales) <= {"volume", "slice"} or not args.scales:
        ap.error(f"--scales takes volume and/or slice, got {args.scales}")
    return args


def main() -> None:
    args = parse()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    folder = Path(args.data) if args.data else measured_dir()
    read_measured_manifest(folder)
    seeds = [int(s) for s in args.seeds.split(",")]
    accels = [int(a) for a in args.accelerations.split(",")]
    rows: list[dict] = []
    trained_all = {}
    for seed in seeds:  # training first: the classical rows do not depend on it
        t = time.perf_counter()
        trained_all[seed] = train_seed(args, seed, Path(args.runs))
        print(f"seed {seed}: trained in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    base = {a: baseline_evaluation(folder, a, args.coil_maps, not args.no_l1) for a in accels}
    for a in accels:
        rows += evaluation_rows(base[a], a) + combined_rows(folder, a, args.coil_maps)
    print(f"classical rows in {time.perf_counter() - t:.0f} s", flush=True)
    runs, train_ratio, fig = {}, [], None
    for seed, trained in trained_all.items():
        runs[seed], train_ratio = trained["runs"], train_ratio + [trained["train_peak_ratio"]]
        for a in accels:
            evals = {"zero-filled": base[a], "CG-SENSE": base[a]}
            for name in MODELS:
                entry = checkpoint_entry(name, trained[name])
                for scale in args.scales:
                    ev = model_evaluation(folder, a, args.coil_maps, entry, scale)
                    rows += [{**r, "seed": seed} for r in evaluation_rows(ev, a)]
                    if scale == args.scales[0]:
                        evals[name] = ev
            if fig is None and a == 4:
                fig = Path(args.out).with_suffix(".png")
                figure(fig, evals, args.scales[0])
    combined = measured_dataset(folder, 4, "combine", "complex", args.coil_maps)
    brain = [i for i, (v, _) in enumerate(combined.items()) if combined.volumes[v].name == BRAIN]
    doc = {"command": "OMP_NUM_THREADS=1 python benchmarks/measured_models.py " + shlex.join(sys.argv[1:]),
           "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()},
           "seeds": seeds, "accelerations": accels, "sources": args.sources, "image_size": args.image_size,
           "coil_maps": args.coil_maps, "scales": args.scales, "data_json": args.data_json,
           "steps": {role: steps(runs[seeds[0]][role], args.batch) for role in ("teacher", "student")},
           "peak_ratio": {"train": float(np.mean(train_ratio)),
                          "measured": peak_ratio(torch.utils.data.Subset(combined, brain))},
           "runs": {str(s): r for s, r in runs.items()}, "figure": None if fig is None else fig.name,
           "rows": rows}
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=2, default=str) + "\n")
    text = markdown(doc)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
