"""The x2/x4 super-resolution table of docs/results.md section 4 (heterogeneous distillation).

For one scale: train the SwinIR-style teacher of configs/hetero_teacher.yaml once; then, per seed,
the CHPNet-style student of configs/hetero_kd.yaml without distillation, distilled from the frozen
teacher (the same stages with `teacher_correction` removed), and distilled with teacher correction
(the config as it is). Everything is scored on the test split next to bicubic interpolation; the
teacher as teacher correction left it is scored too. One JSON line per (model, seed) goes to --log.

Usage (1 thread):
  python benchmarks/hetero_sr.py --scale 2 --seeds 42,43
  python benchmarks/hetero_sr.py --scale 4 --seeds 42,43 --teacher-config configs/hetero_teacher_x4.yaml
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from mrdistill.machine import cpu_model as machine
from mrdistill.config import RunConfig, apply_overrides, from_dict, load_yaml
from mrdistill.data.build import make_task_datasets
from mrdistill.eval.report import summarise
from mrdistill.models.vdsr import Bicubic
from mrdistill.train.checkpoint import load_model
from mrdistill.train.evaluation import evaluate_models
from mrdistill.train.runs import distill_run, train_run

ROOT = Path(__file__).resolve().parents[1]




def config(path: Path, overrides: list[str], epochs: int | None, **top: object) -> dict:
    """YAML + --set overrides + top-level keys, as a plain dict (still editable)."""
    data = apply_overrides(load_yaml(path), overrides)
    data.update(top)
    if epochs is not None:
        data.setdefault("optim", {})["epochs"] = epochs
        for stage in (data.get("distill") or {}).get("stages", []):
            stage["epochs"] = epochs
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--seeds", default="42,43")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="override for both configs, e.g. data.max_train_slices=48")
    ap.add_argument("--teacher-set", action="append", default=[], help="override for the teacher only")
    ap.add_argument("--epochs", type=int, default=None, help="every model's epochs (default: configs)")
    ap.add_argument("--teacher-epochs", type=int, default=None)
    ap.add_argument("--teacher-checkpoint", default=None,
                    help="reuse this trained teacher (from an earlier run of this script) instead of "
                         "training one")
    ap.add_argument("--teacher-config", default=str(ROOT / "configs" / "hetero_teacher.yaml"))
    ap.add_argument("--kd-config", default=str(ROOT / "configs" / "hetero_kd.yaml"))
    ap.add_argument("--out", default="/tmp/hetero_sr")
    ap.add_argument("--log", default=str(ROOT / "benchmarks" / "results" / "hetero_sr.jsonl"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    s = args.scale
    common = [f"data.superres.scale={s}", f"model.kwargs.scale={s}", *args.overrides]
    run = {"out_dir": args.out, "progress": False}
    tdict = config(Path(args.teacher_config), common + args.teacher_set,
                   args.teacher_epochs or args.epochs, name=f"teacher_x{s}", **run)
    tcfg = from_dict(RunConfig, tdict)
    kdict = config(Path(args.kd_config), common, args.epochs, **run)
    data = make_task_datasets(tcfg.data, tcfg.seed)
    if from_dict(RunConfig, kdict).data != tcfg.data:
        raise SystemExit("the teacher and KD configs must describe the same data")
    if args.teacher_checkpoint:
        teacher_ckpt = args.teacher_checkpoint
        teacher = load_model(teacher_ckpt)
    else:
        teacher = train_run(tcfg, True, data).model
        teacher_ckpt = str(Path(args.out) / f"teacher_x{s}" / "checkpoints" / "best.pt")
    models: dict[str, torch.nn.Module] = {"bicubic": Bicubic(s), "teacher": teacher}
    seeds = [int(x) for x in args.seeds.split(",") if x]
    for seed in seeds:
        plain = copy.deepcopy(kdict)
        plain.pop("distill", None)
        models[f"student/{seed}"] = train_run(
            from_dict(RunConfig, {**plain, "name": f"student_x{s}_s{seed}", "seed": seed}), True, data).model
        frozen = copy.deepcopy(kdict)
        for stage in frozen["distill"]["stages"]:
            stage["teacher_correction"] = None
        frozen["distill"]["teacher"] = teacher_ckpt
        models[f"distilled (frozen teacher)/{seed}"] = distill_run(
            from_dict(RunConfig, {**frozen, "name": f"frozen_x{s}_s{seed}", "seed": seed}), True, data,
            teacher).model
        tc = copy.deepcopy(kdict)
        tc["distill"]["teacher"] = teacher_ckpt
        name = f"tc_x{s}_s{seed}"
        models[f"distilled (teacher correction)/{seed}"] = distill_run(
            from_dict(RunConfig, {**tc, "name": name, "seed": seed}), True, data, teacher).model
        models[f"teacher after correction/{seed}"] = load_model(
            Path(args.out) / name / "checkpoints" / "teacher_corrected.pt")
    ev = evaluate_models(models, data["test"])
    summary = summarise(ev.per_volume)
    minutes = (time.time() - start) / 60
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "a") as f:
        for key, metrics in summary.items():
            model, _, seed = key.partition("/")
            rec = {"scale": s, "model": model, "seed": int(seed) if seed else tcfg.seed,
                   **{m: metrics[m][0] for m in ("psnr", "ssim", "hfen", "nmse")},
                   "params": ev.params[key], "ms_per_image": round(ev.ms_per_slice[key], 3),
                   "train": len(data["train"]), "test": len(data["test"]),
                   "size": tcfg.data.image_size, "teacher_epochs": tcfg.optim.epochs,
                   "epochs": kdict["optim"]["epochs"], "teacher_kwargs": tcfg.model.kwargs,
                   "student_kwargs": kdict["model"]["kwargs"], "overrides": args.overrides,
                   "threads": args.threads, "machine": machine(), "minutes": round(minutes, 2),
                   "teacher_checkpoint": args.teacher_checkpoint}
            f.write(json.dumps(rec) + "\n")
            print(json.dumps({k: rec[k] for k in ("scale", "model", "seed", "psnr", "ssim", "hfen",
                                                   "params", "ms_per_image")}), flush=True)
    for model in ("student", "distilled (frozen teacher)", "distilled (teacher correction)",
                  "teacher after correction"):
        vals = [summary[f"{model}/{seed}"]["psnr"][0] for seed in seeds]
        print(f"{model}: PSNR {np.mean(vals):.3f} (seeds {', '.join(f'{v:.3f}' for v in vals)})")
    print(f"total {minutes:.1f} min")


if __name__ == "__main__":
    main()
