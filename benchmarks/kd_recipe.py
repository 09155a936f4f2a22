"""Search for a KD recipe that closes part of the teacher-student gap at a CPU budget.

Usage: python benchmarks/kd_recipe.py --acceleration 4 --seeds 42 --variants plain,kdmri
Each line of the output JSONL is one (variant, seed) with the test PSNR/SSIM of the model.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import math
import json
import time
from pathlib import Path

import numpy as np
import torch

from mrdistill.config import DataConfig, RunConfig, from_dict
from mrdistill.data.build import make_datasets
from mrdistill.data.datasets import SliceDataset
from mrdistill.eval.report import summarise
from mrdistill.train.evaluation import evaluate_models
from mrdistill.train.checkpoint import load_model
from mrdistill.train.runs import distill_run, train_run



def variants(epochs: int) -> dict[str, list[dict]]:
    """name -> distillation stages, all within `epochs` epochs (the plain student's budget)."""
    at = {"name": "attention", "weight": 1000.0}
    im = lambda w: {"name": "imitation", "weight": w}  # noqa: E731
    return {
        "kdmri": [{"epochs": epochs // 6, "task_weight": 0.0, "kd": [at]},
                  {"epochs": epochs - epochs // 6, "task_weight": 0.5, "kd": [im(0.5)]}],
        "joint": [{"epochs": epochs, "task_weight": 1.0, "kd": [at, im(1.0)]}],
        "imit": [{"epochs": epochs, "task_weight": 0.5, "kd": [im(0.5)]}],
        "at_task": [{"epochs": epochs, "task_weight": 1.0, "kd": [at]}],
        "semi": [{"epochs": epochs, "task_weight": 1.0, "kd": [im(1.0)]}],
        # A feature stage (AT only, every slice) then `semi`: the study's schedule with imitation.
        "at+semi": [{"epochs": epochs // 5, "task_weight": 0.0, "kd": [at]},
                    {"epochs": epochs - epochs // 5, "task_weight": 1.0, "kd": [im(1.0)]}],
        "at2+semi": [{"epochs": 2 * epochs // 5, "task_weight": 0.0, "kd": [at]},
                     {"epochs": epochs - 2 * epochs // 5, "task_weight": 1.0, "kd": [im(1.0)]}],
        "hint+semi": [{"epochs": epochs // 5, "task_weight": 0.0, "kd": [{"name": "hint"}]},
                      {"epochs": epochs - epochs // 5, "task_weight": 1.0, "kd": [im(1.0)]}],
        # Every student cascade output follows the teacher's cascade output (deep supervision).
        "casc": [{"epochs": epochs, "task_weight": 1.0, "kd": [im(1.0), {
            "name": "hint", "weight": 10.0, "kwargs": {"regressor": False, "pairs": {
                f"cascade{i}.out": f"cascade{i}.out" for i in range(1, 5)}}}]}],
    }


def site_datasets(cfg: DataConfig, seed: int, site: str, labeled: int | None,
                  teacher: bool = False) -> dict:
    """The data sets of one site. "shared": `make_datasets` as configured. "disjoint": the training
    slices split by parity, the teacher's site the even ones (all with targets), the students' the
    odd ones, `labeled` of them (evenly spaced) with targets and the rest undersampled-only."""
    ds = make_datasets(cfg, seed)
    if site == "shared":
        return ds
    full = make_datasets(dataclasses.replace(cfg, labeled_train_slices=None), seed)
    records = full["train"].records[0 if teacher else 1::2]
    keep = set(range(len(records))) if labeled is None else set(
        np.linspace(0, len(records) - 1, labeled).round().astype(int).tolist())
    out = {"train": SliceDataset([r for i, r in enumerate(records) if i in keep], cfg, "train", seed),
           "val": full["val"], "test": full["test"]}
    rest = [r for i, r in enumerate(records) if i not in keep]
    if rest:
        out["unlabeled"] = SliceDataset(rest, cfg, "train", seed, with_target=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--acceleration", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--train", type=int, default=80)
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--variants", default="kdmri")
    ap.add_argument("--data", default="{}", help="JSON overrides of DataConfig")
    ap.add_argument("--out", default="/tmp/kd_recipe")
    ap.add_argument("--log", default="benchmarks/results/kd_recipe.jsonl")
    ap.add_argument("--labeled", type=int, default=None, help="labelled training slices (rest: no GT)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--residual", action="store_true", help="residual cascades (Schlemper's DC-CNN)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--teacher-epochs", type=int, default=None, help="teacher budget (default: --epochs)")
    ap.add_argument("--student", default='{"convs": 3}',
                    help="JSON kwargs of the student DC-CNN (width: channels, depth: convs)")
    ap.add_argument("--teacher-labeled", type=int, default=None,
                    help="labelled slices the teacher trains on (default: --labeled)")
    ap.add_argument("--teacher-seed", type=int, default=None,
                    help="one teacher for every student seed (default: a teacher per seed)")
    ap.add_argument("--site", choices=("shared", "disjoint"), default="shared",
                    help="disjoint: the teacher trains on the even training slices with targets, "
                         "the students' site is the odd ones (--labeled of them with targets)")
    ap.add_argument("--channels-last", default="auto", choices=("auto", "true", "false"),
                    help="optim.channels_last of every run; the recorded rows were trained with false")
    ap.add_argument("--feature-select", default=None,
                    help="epoch kept by task-free stages (StageConfig.select; default: lowest "
                         "validation objective; val_metric reproduces rows recorded before issue 18)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = {"image_size": args.size, "max_train_slices": args.train, "max_eval_slices": 32,
            "slab": 4, "mask": {"acceleration": args.acceleration},
            "labeled_train_slices": args.labeled, **json.loads(args.data)}
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        layout = {"auto": "auto", "true": True, "false": False}[args.channels_last]
        optim = lambda e: {"epochs": e, "batch_size": args.batch,  # noqa: E731
                           "step_size": max(e * 2 // 3, 1), "gamma": 0.3, "channels_last": layout}
        base = {"out_dir": args.out, "seed": seed, "progress": False, "data": data, "optim": optim(args.epochs)}
        tbase = {**base, "optim": optim(args.teacher_epochs or args.epochs)}
        teacher_spec = {"name": "dccnn", "kwargs": {"convs": 5, "residual": args.residual}}
        student_spec = {"name": "dccnn", "kwargs": {**json.loads(args.student), "residual": args.residual}}
        data_cfg = from_dict(DataConfig, copy.deepcopy(data))
        ds = site_datasets(data_cfg, seed, args.site, args.labeled)
        tdata = {**data, "labeled_train_slices": args.teacher_labeled or args.labeled}
        tseed = seed if args.teacher_seed is None else args.teacher_seed
        tds = site_datasets(from_dict(DataConfig, copy.deepcopy(tdata)), tseed, args.site, None,
                            teacher=True)
        tbase = {**tbase, "seed": tseed, "data": tdata}
        models = {}
        t0 = time.time()
        for role, spec, b, d in (("teacher", teacher_spec, tbase, tds), ("student", student_spec, base, ds)):
            key = hashlib.sha1(json.dumps([b, spec, args.site], sort_keys=True).encode()).hexdigest()[:10]
            cached = Path(args.out) / f"{role}-{key}" / "checkpoints" / "best.pt"
            if cached.exists():  # same data, seed and budget: reuse the trained model
                models[role] = load_model(cached)
            else:
                cfg = from_dict(RunConfig, {**b, "name": f"{role}-{key}", "model": spec})
                models[role] = train_run(cfg, True, d).model
        for name in args.variants.split(","):
            if not name:
                continue
            # Same optimizer-step budget as the plain student, even when undersampled-only slices
            # make the distilled student's epochs longer.
            # "@lab": the students' labelled slices only (no teacher labels on undersampled-only
            # ones): tells how much of a gain comes from those slices.
            dds = {k: v for k, v in ds.items() if k != "unlabeled"} if name.endswith("@lab") else ds
            steps = args.epochs * math.ceil(len(dds["train"]) / args.batch)
            seen = len(dds["train"]) + len(dds.get("unlabeled", []))
            epochs = max(1, round(steps / math.ceil(seen / args.batch)))
            dbase = {**base, "optim": {**optim(epochs), "max_steps": steps}}
            stages = [{**st, "select": args.feature_select} if st["task_weight"] == 0 and args.feature_select
                      else st for st in variants(epochs)[name.removesuffix("@lab").removesuffix("+init")]]
            cfg = {**dbase, "name": f"{name.replace('@', '_')}-{key}", "model": student_spec,
                   "distill": {"teacher": "-", "stages": stages,
                               "init_from_teacher": "teacher_layers" if name.endswith("+init") else None}}
            models[name] = distill_run(from_dict(RunConfig, cfg), True, dds, models["teacher"]).model
        ev = evaluate_models({"zero-filled": None, **models}, ds["test"])
        summary = summarise(ev.per_volume)
        for name, s in summary.items():
            rec = {"model": name, "seed": seed, "student": args.student, "site": args.site,
                   "teacher_labeled": args.teacher_labeled, "teacher_seed": args.teacher_seed,
                   "params": ev.params[name], "acc": args.acceleration, "size": args.size,
                   "labeled": args.labeled, "residual": args.residual, "batch": args.batch,
                   "teacher_epochs": args.teacher_epochs or args.epochs,
                   "epochs": args.epochs, "train": len(ds["train"]), "data": args.data,
                   # Rows without these two predate issue 18 (old kdmri density, PSNR-selected
                   # feature stages).
                   "mask_kind": data_cfg.mask.kind, "feature_select": args.feature_select or "default",
                   "psnr": s["psnr"][0], "ssim": s["ssim"][0], "minutes": (time.time() - t0) / 60}
            print(json.dumps(rec), flush=True)
            with open(args.log, "a") as f:
                f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
