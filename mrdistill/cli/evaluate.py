"""`mrdistill evaluate`: score a run's checkpoint on its test split, or score fastMRI-style
prediction files (`--target-path T --predictions-path P`) the way fastMRI's evaluate.py does, plus
HFEN and VIF. Writes metrics.json, per_slice.csv (and per_volume.csv) and report.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrdistill.cli.common import add_device_arg
from mrdistill.device import resolve_device
from mrdistill.errors import MrdistillError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics of a run's checkpoint, or of fastMRI prediction files",
                       description=__doc__)
    run_args = p.add_argument_group("a run's checkpoint on its test set")
    run_args.add_argument("--run", default=None, help="run directory (holds config.yaml and checkpoints/)")
    run_args.add_argument("--checkpoint", default="best.pt", help="file in <run>/checkpoints/")
    add_device_arg(run_args, None)
    files = p.add_argument_group("prediction files against fastMRI targets")
    files.add_argument("--target-path", default=None, help="folder of fastMRI files with targets")
    files.add_argument("--predictions-path", default=None,
                       help="folder of <name>.h5 files with dataset 'reconstruction' (slices, H, W)")
    files.add_argument("--challenge", choices=("singlecoil", "multicoil"), default=None,
                       help="target reconstruction_esc or reconstruction_rss (default: by the k-space)")
    files.add_argument("--acceleration", type=float, default=None,
                       help="score only targets whose 'acceleration' attribute equals this")
    files.add_argument("--acquisition", default=None,
                       help="score only targets of this acquisition, e.g. CORPD_FBK, CORPDFS_FBK, AXT2")
    files.add_argument("--metrics", default="nmse,psnr,ssim,hfen,vif",
                       help="comma-separated metrics (default: %(default)s)")
    p.add_argument("--out", default=None,
                   help="output folder (default: <run>/evaluation or <predictions-path>/evaluation)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    file_mode = args.target_path is not None or args.predictions_path is not None
    if args.run is not None and file_mode:
        raise MrdistillError("give --run, or --target-path with --predictions-path, not both")
    if args.run is not None:
        return _run_mode(args)
    if not (args.target_path and args.predictions_path):
        raise MrdistillError("evaluate needs --run RUN_DIR, or both --target-path and --predictions-path")
    return _file_mode(args)


def _run_mode(args: argparse.Namespace) -> int:
    from mrdistill.config import load_run_config
    from mrdistill.data.superres import make_task_datasets
    from mrdistill.train.checkpoint import load_model
    from mrdistill.train.evaluation import evaluate_models, write_evaluation
    from mrdistill.train.runs import baseline_for

    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").is_file():
        raise MrdistillError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_run_config(run_dir / "config.yaml")
    cfg.device = str(resolve_device(args.device or cfg.device))
    model = load_model(run_dir / "checkpoints" / args.checkpoint, cfg.device)
    test = make_task_datasets(cfg.data, cfg.seed)["test"]  # SR data for SR runs
    baseline, base_model = baseline_for(cfg)
    ev = evaluate_models({baseline: base_model, cfg.name: model}, test, cfg.device)
    out = Path(args.out) if args.out else run_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    print(write_evaluation(out, ev, f"{cfg.name}: evaluation", [f"checkpoint: {args.checkpoint}"],
                          zero_filled=baseline))
    print(f"\nwritten: {out}")
    return 0


def _file_mode(args: argparse.Namespace) -> int:
    from mrdistill.eval.report import (markdown_table, summarise, write_metrics_json,
                                       write_per_slice_csv, write_report_md)
    from mrdistill.train.file_evaluation import evaluate_prediction_files

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    ev = evaluate_prediction_files(args.target_path, args.predictions_path, challenge=args.challenge,
                                   acceleration=args.acceleration, acquisition=args.acquisition,
                                   metrics=metrics, progress=not args.no_progress)
    label = Path(args.predictions_path).resolve().name or "predictions"
    summary = summarise({label: ev.metric_rows(metrics)})
    out = Path(args.out) if args.out else Path(args.predictions_path) / "evaluation"
    meta = {"target_path": str(args.target_path), "predictions_path": str(args.predictions_path),
            "challenge": args.challenge or "by k-space coils", "acceleration": args.acceleration,
            "acquisition": args.acquisition, "volumes": len(ev.per_volume),
            "filtered_out": ev.filtered_out,
            "conventions": "fastMRI evaluate.py: crop to (w, w) of the target; per volume; data "
                           "range = target volume max; SSIM 7x7 uniform, K1 0.01, K2 0.03, mean over "
                           "slices; HFEN LoG 15x15 sigma 1.5; VIF-P"}
    write_metrics_json(out / "metrics.json", summary, meta=meta)
    write_per_slice_csv(out / "per_slice.csv", ev.per_slice)
    write_per_slice_csv(out / "per_volume.csv", ev.per_volume)
    table = markdown_table(summary, metrics=tuple(m for m in ("psnr", "ssim", "nmse", "hfen", "vif")
                                                  if m in metrics) or metrics)
    notes = [f"{k}: {v}" for k, v in meta.items()]
    write_report_md(out / "report.md", f"{label}: fastMRI evaluation", table, notes)
    line = " ".join(f"{m.upper()} = {mean:.4g} +/- {two_sd:.4g}" for m, (mean, two_sd) in summary[label].items())
    print(f"{len(ev.per_volume)} volumes: {line}\n")
    print(table)
    print(f"written: {out}")
    return 0
