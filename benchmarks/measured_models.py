"""Models trained on the embedded corpus, scored on real measured k-space (issue 25, item 4).

Per seed: a DC-CNN teacher (D5C5, 32 channels, residual cascades, complex 2-channel input,
`data.mode: complex`), a plain student (D3C5) and a distilled student (the same optimizer steps;
one stage of L1 to the target plus imitation of the teacher, weight 1.0: the recipe of
configs/front_dccnn.yaml), trained in-process on the wider embedded sources with fastMRI's random
masks (4x, centre 0.08). Each checkpoint is then scored per image on the measured k-space
(`benchmarks/measured_eval.py`: pyqmri's 10 flip angles of one in-vivo brain slice, 13 coils,
224 x 224, and the twix phantom) at 4x and 8x next to zero-filled, CG-SENSE and L1-wavelet.
`--family` picks the models (FAMILIES): `dccnn` is single-coil (it gets the sensitivity-weighted
coil combination); `dccnn_sense` (DC-CNN with `coil_maps: true`) and `modl` train on the embedded
corpus simulated as `--coils` coils and keep every measured coil in their data consistency
through the coil maps; `varnet` estimates its own maps from all coils.

Intensity convention (`--scales`): embedded slices are normalised per slice (target max 1),
measured files per volume (max over the 10 flip angles; the darkest flip angle peaks at 0.27).
"volume" feeds the file's scale as `predict` does; "slice" divides each slice by its largest
zero-filled magnitude (known at inference) and scales the output back (`SliceScaled`). The JSON
records the target max / zero-filled max ratio of both data sets, to show how close that is.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/measured_models.py --seeds 42 --teacher-epochs 10 \\
        --epochs 10 --data /tmp/mcache/measured --out benchmarks/results/measured_models
    OMP_NUM_THREADS=1 python benchmarks/measured_models.py --family modl --seeds 42,43,44 ...
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
from measured_finetune import finetune_seed, measured_data, run_once  # noqa: E402
from measured_report import BRAIN, merge_docs, write_doc  # noqa: E402
from measured_eval import (SETTINGS, baseline_evaluation, checkpoint_entry, evaluation_rows,  # noqa: E402
                           measured_dataset, model_evaluation, zero_filled_peak)
from mrdistill.config import DataConfig, RunConfig, deep_merge, from_dict  # noqa: E402
from mrdistill.data.build import make_datasets  # noqa: E402
from mrdistill.data.measured import measured_dir, read_measured_manifest  # noqa: E402
from mrdistill.data.coils import combine_coils  # noqa: E402
from mrdistill.data.sources import BROAD  # noqa: E402
from mrdistill.data.fastmri import FastMRISliceDataset  # noqa: E402
from mrdistill.demo import SITE_STAGES  # noqa: E402
from mrdistill.eval.metrics import slice_metrics  # noqa: E402
from mrdistill.physics.fft import ifft2c  # noqa: E402
from mrdistill.train.evaluation import evaluate_models  # noqa: E402
from mrdistill.eval.figures import save_panel  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402
from mrdistill.train.budget import matched_budget  # noqa: E402
from mrdistill.train.runs import distill_run, train_run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("teacher", "student", "distilled")
# Per family (`--family`): the registered model (default: the family's name) and the teacher's,
# student's and smoke kwargs. DC-CNN is single-coil (it gets the coil combination); its SENSE form
# (dccnn_sense: coil_maps=True) sees the combined image and keeps every coil's samples in its DC,
# as MoDL (in_channels 2) does through its CG solve; both reconstruct one
# image through the coil maps, trained on simulated coils whose maps are estimated as a measured
# file's are (data.datasets.SliceDataset), and scored with the measured data's maps.
FAMILIES = {
    "dccnn": {"teacher": {"cascades": 5, "convs": 5, "channels": 32, "in_channels": 2, "residual": True},
              "student": {"cascades": 5, "convs": 3, "channels": 32, "in_channels": 2, "residual": True},
              "smoke": {"teacher": {"cascades": 2, "convs": 3, "channels": 8, "in_channels": 2, "residual": True},
                        "student": {"cascades": 2, "convs": 2, "channels": 4, "in_channels": 2,
                                    "residual": True}}},
    "dccnn_sense": {"model": "dccnn",
                    "teacher": {"cascades": 5, "convs": 5, "channels": 32, "in_channels": 2, "residual": True,
                                "coil_maps": True},
                    "student": {"cascades": 5, "convs": 3, "channels": 32, "in_channels": 2, "residual": True,
                                "coil_maps": True},
                    "smoke": {"teacher": {"cascades": 2, "convs": 3, "channels": 8, "in_channels": 2,
                                          "residual": True, "coil_maps": True},
                              "student": {"cascades": 2, "convs": 2, "channels": 4, "in_channels": 2,
                                          "residual": True, "coil_maps": True}}},
    "modl": {"teacher": {"unrolls": 5, "convs": 5, "channels": 32, "in_channels": 2, "cg_iters": 10},
             "student": {"unrolls": 5, "convs": 3, "channels": 16, "in_channels": 2, "cg_iters": 10},
             "smoke": {"teacher": {"unrolls": 2, "convs": 3, "channels": 8, "in_channels": 2, "cg_iters": 3},
                       "student": {"unrolls": 2, "convs": 2, "channels": 4, "in_channels": 2, "cg_iters": 3}}},
    "varnet": {"teacher": {"num_cascades": 5, "chans": 8, "pools": 2, "sens_chans": 4, "sens_pools": 2},
               "student": {"num_cascades": 3, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 2},
               "smoke": {"teacher": {"num_cascades": 2, "chans": 4, "pools": 1, "sens_chans": 2, "sens_pools": 1},
                         "student": {"num_cascades": 1, "chans": 2, "pools": 1, "sens_chans": 2,
                                     "sens_pools": 1}}},
}
FIGURE_SLICE = 5
METRICS = ("psnr", "ssim", "nmse")
COMBINED_ZF = "zero-filled, coil-combined (DC-CNN input)"
CEILING = "full k-space, coil-combined (DC-CNN ceiling)"


def data_dict(args: argparse.Namespace, labeled: int | None) -> dict:
    """The embedded training data: complex images, fastMRI's random mask at 4x (centre 0.08)."""
    raw = {"sources": args.sources, "image_size": args.image_size, "mode": "complex", "slab": 4,
           "max_train_slices": args.train_slices, "max_eval_slices": args.eval_slices,
           "labeled_train_slices": labeled, "coils": args.coils,
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
    family = FAMILIES[args.family]
    kwargs, model = family["smoke"] if args.smoke else family, family.get("model", args.family)
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
                     "model": {"name": model, "kwargs": kwargs["teacher"]},
                     "optim": optim(args.teacher_epochs, args.batch)}, tsets),
        "student": ({**common, "name": f"seed{seed}-student", "data": data_dict(args, args.labeled),
                     "model": {"name": model, "kwargs": kwargs["student"]}, "optim": student_optim},
                    ssets),
    }
    out: dict = {"runs": {}}
    teacher = None
    for name, (raw, sets) in specs.items():
        out[name], net, seconds = run_once(train_run, from_dict(RunConfig, raw, name), args.reuse, datasets=sets)
        teacher = net if name == "teacher" else teacher
        out["runs"][name] = {"seconds": seconds, "model": raw["model"], "optim": raw["optim"],
                             "train_slices": len(sets["train"])}
    raw = {**common, "name": f"seed{seed}-distilled", "data": data_dict(args, args.labeled),
           "model": {"name": model, "kwargs": kwargs["student"]}, "optim": distill_optim,
           "distill": {"teacher": str(out["teacher"]), "stages": stages}}
    out["distilled"], _, seconds = run_once(distill_run, from_dict(RunConfig, raw, "distilled"), args.reuse,
                                            datasets=ssets, teacher=teacher)
    out["runs"]["distilled"] = {"seconds": seconds, "model": raw["model"],
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
        sample, image = multi[i], ceiling_image(multi, i)
        rows.append({"acceleration": accel, "model": CEILING, "volume": multi.volumes[v].name, "slice": s,
                     **slice_metrics(sample.target[0], image, float(sample.max_value), names=METRICS)})
    return rows


def ceiling_image(multi: FastMRISliceDataset, i: int) -> torch.Tensor:
    """Item i's fully sampled k-space combined with the coil maps its undersampled calibration
    region gives, on the volume scale: float32 magnitude (H, W). multi: `coil_mode: multi`."""
    v, s = multi.items()[i]
    full = multi.read_slice(multi.volumes[v], s)[0] / multi.volume_scale(v)
    return combine_coils(ifft2c(full), multi[i].smaps).abs()[0]


def steps(run: dict, batch: int) -> int:
    """Optimizer steps of a plain run: epochs x batches of its training slices."""
    return run["optim"]["epochs"] * math.ceil(run["train_slices"] / batch)


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
    ap.add_argument("--sources", default=",".join(BROAD), help="comma-separated embedded sources")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="dccnn",
                    help="dccnn: single-coil on the coil combination; dccnn_sense: DC with every "
                         "coil through the maps; modl: CG with the maps; varnet: its own maps")
    ap.add_argument("--coils", type=int, default=None,
                    help="simulated training coils (default: 1 for dccnn, 8 otherwise)")
    ap.add_argument("--train-slices", type=int, default=80)
    ap.add_argument("--eval-slices", type=int, default=16, help="embedded validation slices")
    ap.add_argument("--labeled", type=int, default=None,
                    help="students' fully sampled slices (the rest undersampled-only); default all")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--data-json", type=json.loads, default={},
                    help='DataConfig keys merged over the training data, e.g. \'{"noise_std": 0.01}\'')
    ap.add_argument("--finetune-epochs", type=int, default=0,
                    help="then fine-tune every model on the measured data, whole contrasts held out "
                         "(benchmarks/measured_finetune.py); 0: no fine-tuning")
    ap.add_argument("--finetune-labeled", type=int, default=None,
                    help="the students' site setting in fine-tuning: this many training contrasts "
                         "fully sampled, the rest undersampled-only (the teacher keeps them all)")
    ap.add_argument("--reuse", action="store_true",
                    help="take finished runs of the same config in --runs as they are")
    ap.add_argument("--scales", default="volume,slice", help="volume and/or slice (see the docstring)")
    ap.add_argument("--accelerations", default="4,8")
    ap.add_argument("--coil-maps", choices=("ratio", "espirit"), default="ratio")
    ap.add_argument("--no-l1", action="store_true", help="leave out the L1-wavelet row (slow)")
    ap.add_argument("--data", default=None, help="measured folder (default: mrdistill's cache)")
    ap.add_argument("--runs", default="/tmp/mrdistill_measured_models", help="training run folders")
    ap.add_argument("--out", default=str(RESULTS / "measured_models"))
    ap.add_argument("--smoke", action="store_true", help="tiny models, data and budget; 4x, no L1")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="only write --out from earlier runs' JSON that differ in their seeds")
    args = ap.parse_args()
    if args.smoke:
        args.image_size, args.train_slices, args.eval_slices, args.epochs = 32, 8, 4, 1
        args.teacher_epochs, args.accelerations, args.no_l1, args.batch = 1, "4", True, 4
    args.teacher_epochs = args.teacher_epochs or args.epochs
    args.coils = args.coils or (1 if args.family == "dccnn" else 8)
    if args.family == "dccnn" and args.coils != 1:
        ap.error("--family dccnn trains single-coil (the coil combination): leave --coils at 1")
    args.sources = [s for s in args.sources.split(",") if s]
    args.scales = [s for s in args.scales.split(",") if s]
    if not set(args.scales) <= {"volume", "slice"} or not args.scales:
        ap.error(f"--scales takes volume and/or slice, got {args.scales}")
    return args


def main() -> None:
    args = parse()
    if args.merge:
        write_doc(merge_docs([json.loads(Path(p).read_text()) for p in args.merge], args.merge), Path(args.out))
        return
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
        if args.finetune_epochs:
            data = measured_data(folder, "combine" if args.family == "dccnn" else "multi", args.coil_maps,
                                 SETTINGS[4])
            tuned = finetune_seed(trained_all[seed], seed, Path(args.runs), data, args.finetune_epochs,
                                  args.batch, args.finetune_labeled, args.reuse)
            trained_all[seed]["runs"].update(tuned.pop("runs"))
            trained_all[seed].update(tuned)
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
            for name in [m for m in trained if m not in ("runs", "train_peak_ratio")]:
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
           "family": args.family, "coils": args.coils, "finetune_epochs": args.finetune_epochs,
           "finetune_labeled": args.finetune_labeled,
           "seeds": seeds, "accelerations": accels, "sources": args.sources, "image_size": args.image_size,
           "coil_maps": args.coil_maps, "scales": args.scales, "data_json": args.data_json,
           "steps": {role: steps(runs[seeds[0]][role], args.batch) for role in ("teacher", "student")},
           "peak_ratio": {"train": float(np.mean(train_ratio)),
                          "measured": peak_ratio(torch.utils.data.Subset(combined, brain))},
           "runs": {str(s): r for s, r in runs.items()}, "figure": None if fig is None else fig.name,
           "rows": rows}
    write_doc(doc, Path(args.out))


if __name__ == "__main__":
    main()
