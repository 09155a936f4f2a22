"""`mrdistill evaluate` (arguments: `cli.parsers`): a run's checkpoint on its test split (or a
recorded split), with a foreign model as one more row, or fastMRI-style prediction files against
their targets. Writes metrics.json, per_slice.csv, report.md and figures/ with an index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrdistill.cli.common import foreign_model_from_args
from mrdistill.device import resolve_device
from mrdistill.config import load_run_config
from mrdistill.data.build import make_task_datasets
from mrdistill.errors import MrdistillError
from mrdistill.eval.report import (markdown_table, summarise, write_metrics_json,
                                   write_per_slice_csv, write_report_md)
from mrdistill.train.checkpoint import load_model
from mrdistill.train.evaluation import evaluate_models, write_evaluation
from mrdistill.train.file_evaluation import comparison_figures, evaluate_prediction_files
from mrdistill.train.predict import load_predictor
from mrdistill.train.runs import baseline_for, planned_epochs
from mrdistill.train.splits import check_same_volumes, read_split
from mrdistill.train.state import run_progress
from mrdistill.train.teachers import foreign_label
from mrdistill.rundir import check_output_path, claim, open_output


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.figures <= 1000:
        raise MrdistillError(f"--figures must be in 0..1000, got {args.figures}")
    file_mode = args.target_path is not None or args.predictions_path is not None
    if args.run is not None and file_mode:
        raise MrdistillError("give --run, or --target-path with --predictions-path, not both")
    if args.run is not None:
        return _run_mode(args)
    if args.split is not None:
        raise MrdistillError("--split names a split of a run: give --run RUN too")
    if foreign_model_from_args(args) is not None:
        raise MrdistillError("a foreign model is scored on a run's data: give --run RUN too")
    if not (args.target_path and args.predictions_path):
        raise MrdistillError("evaluate needs --run RUN_DIR, or both --target-path and --predictions-path")
    return _file_mode(args)


def _run_mode(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").is_file():
        raise MrdistillError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_run_config(run_dir / "config.yaml")
    cfg.device = str(resolve_device(args.device or cfg.device))
    foreign = foreign_model_from_args(args)
    split = args.split or "test"
    recorded = read_split(run_dir, args.split) if args.split is not None else None
    out = Path(args.out) if args.out else run_dir / "evaluation"
    inputs = [run_dir / "config.yaml", run_dir / "checkpoints"]
    check_output_path(out, inputs + ([foreign.weights] if foreign is not None else []))
    model = load_model(run_dir / "checkpoints" / args.checkpoint, cfg.device)
    # A foreign model's weights are checked before anything is written.
    extra = {foreign_label(foreign): load_predictor(foreign, cfg.device)[0]} if foreign else {}
    data = make_task_datasets(cfg.data, cfg.seed)[split]  # SR data for SR runs
    if recorded is not None:
        check_same_volumes(data, recorded, f"{run_dir} --split {split}")
    # An earlier evaluation in `out` is updated; a folder mrdistill did not create is refused.
    with claim(out, resume=True, inputs=inputs, command="evaluate"):
        baseline, base_model = baseline_for(cfg)
        ev = evaluate_models({baseline: base_model, **extra, cfg.name: model}, data, cfg.device)
        progress = run_progress(run_dir, planned_epochs(cfg))
        notes = [f"checkpoint: {args.checkpoint}" + (f" ({progress} of the run)" if progress else ""),
                 f"split: {split}"
                 + (" (recorded in splits.json)" if recorded is not None else " (from config.yaml)")]
        print(write_evaluation(out, ev, f"{cfg.name}: evaluation", notes, figures=args.figures,
                               zero_filled=baseline))
        if progress:  # a killed (or still running) run: its checkpoint is not the final one
            print(f"mrdistill: note: {run_dir} is {progress}; resume it with --resume to finish it",
                  file=sys.stderr)
    print(f"\nwritten: {out}")
    return 0


def _labels(paths: list[str]) -> list[str]:
    """Table labels: the folder names, made unique with their parents where two share a name."""
    names = [Path(p).resolve().name or "predictions" for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(p).resolve().relative_to(Path(p).resolve().anchor)) for p in paths]


def _file_mode(args: argparse.Namespace) -> int:
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    paths = list(args.predictions_path)
    if len(paths) > 1 and not args.out:
        raise MrdistillError("several --predictions-path folders: give --out for the common table")
    out = Path(args.out) if args.out else Path(paths[0]) / "evaluation"
    inputs = [args.target_path, *paths]
    check_output_path(out, inputs)
    labels = _labels(paths)
    evs = {label: evaluate_prediction_files(args.target_path, path, challenge=args.challenge,
                                            acceleration=args.acceleration,
                                            acquisition=args.acquisition, metrics=metrics,
                                            skip_bad=args.skip_bad, progress=not args.no_progress)
           for label, path in zip(labels, paths)}
    summary = summarise({label: ev.metric_rows(metrics) for label, ev in evs.items()})
    open_output(out, resume=True, inputs=inputs, command="evaluate").commit()
    first = next(iter(evs.values()))
    meta = {"target_path": str(args.target_path),
            "predictions_path": paths[0] if len(paths) == 1 else dict(zip(labels, paths)),
            "challenge": args.challenge or "by k-space coils", "acceleration": args.acceleration,
            "acquisition": args.acquisition, "volumes": len(first.per_volume),
            "filtered_out": first.filtered_out,
            "skipped": [f"{path}: {problem}" if not problem.startswith(path) else problem
                        for path, problem in first.skipped],
            "conventions": "fastMRI evaluate.py: crop to (w, w) of the target; per volume; data "
                           "range = target volume max; SSIM 7x7 uniform, K1 0.01, K2 0.03, mean over "
                           "slices; HFEN LoG 15x15 sigma 1.5; VIF-P"}
    write_metrics_json(out / "metrics.json", summary, meta=meta)
    if len(evs) == 1:
        write_per_slice_csv(out / "per_slice.csv", first.per_slice)
        write_per_slice_csv(out / "per_volume.csv", first.per_volume)
    else:  # one table for all folders: a leading column names the folder of each row
        write_per_slice_csv(out / "per_slice.csv",
                            [{"predictions": k, **row} for k, ev in evs.items() for row in ev.per_slice])
        write_per_slice_csv(out / "per_volume.csv",
                            [{"predictions": k, **row} for k, ev in evs.items() for row in ev.per_volume])
    figures = comparison_figures(first, dict(zip(labels, map(Path, paths))), out / "figures",
                                 volumes=args.figures)
    table = markdown_table(summary, metrics=tuple(m for m in ("psnr", "ssim", "nmse", "hfen", "vif")
                                                  if m in metrics) or metrics)
    notes = [f"{k}: {v}" for k, v in meta.items()] + [f"figure: {f.name}" for f in figures]
    title = f"{labels[0]}: fastMRI evaluation" if len(labels) == 1 else "fastMRI evaluation"
    write_report_md(out / "report.md", title, table, notes)
    for label, ev in evs.items():
        line = " ".join(f"{m.upper()} = {mean:.4g} +/- {two_sd:.4g}"
                        for m, (mean, two_sd) in summary[label].items())
        print(f"{label}: {len(ev.per_volume)} volumes: {line}" if len(evs) > 1
              else f"{len(ev.per_volume)} volumes: {line}")
    if meta["skipped"]:
        print(f"skipped {len(meta['skipped'])} bad target file(s):")
        for line in meta["skipped"]:
            print(f"  {line}")
    print()
    print(table)
    print(f"written: {out}")
    return 0
