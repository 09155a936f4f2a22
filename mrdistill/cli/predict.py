"""`mrdistill predict` (arguments: `cli.parsers`): reconstruct fastMRI HDF5 files or image volumes
with a checkpoint or a foreign model; `--run RUN --split NAME` takes the files of a recorded split."""

from __future__ import annotations

import argparse
from dataclasses import replace

from pathlib import Path

from mrdistill.cli.common import foreign_model_from_args
from mrdistill.config import PredictConfig, TeacherConfig, check_fields
from mrdistill.device import resolve_device
from mrdistill.errors import MrdistillError
from mrdistill.train.predict import predict, training_mask
from mrdistill.train.splits import read_split


# PredictConfig fields -> the options that set them (for messages)
FLAGS = {"mask.kind": "--mask", "mask.acceleration": "--acceleration", "mask.center_fraction":
         "--center-fraction", "mask.path": "--mask-path", "coil_mode": "--coil-mode",
         "slice_axis": "--slice-axis", "batch_size": "--batch-size", "device": "--device"}


def model_and_inputs(args: argparse.Namespace) -> tuple[str | TeacherConfig, list[str]]:
    """(the checkpoint path or foreign model, the inputs) that the options name: --checkpoint,
    --model/--weights, or --run (its best checkpoint); --split adds a run's recorded files."""
    foreign = foreign_model_from_args(args)
    given = [name for name, v in (("--checkpoint", args.checkpoint), ("--model/--weights", foreign))
             if v is not None]
    if len(given) > 1:
        raise MrdistillError("give --checkpoint or a foreign model (--model ... --weights ...), not both")
    if args.split is not None and args.run is None:
        raise MrdistillError("--split names a split of a run: give --run RUN too")
    inputs = list(args.inputs)
    if args.split is not None:
        entry = read_split(Path(args.run), args.split)
        if "files" not in entry:
            raise MrdistillError(f"{args.run}: its {args.split} split is not made of files (the "
                                 f"embedded corpus): score it with `mrdistill evaluate --run "
                                 f"{args.run} --split {args.split}`")
        inputs += entry["files"]
    if not inputs:
        raise MrdistillError("nothing to reconstruct: give input files or folders, or --run RUN --split test")
    model = foreign if foreign is not None else args.checkpoint
    if model is None and args.run is not None:
        model = str(Path(args.run) / "checkpoints" / "best.pt")
    if model is None:
        raise MrdistillError("give --checkpoint FILE, --run RUN, or a foreign model (--model NAME --weights FILE)")
    return model, inputs


def config_from_args(args: argparse.Namespace, model: str | TeacherConfig) -> PredictConfig:
    """`PredictConfig` defaults, replaced by the options given; mask options modify the
    checkpoint's training mask (no mask option: predict uses that mask as it is)."""
    cfg = PredictConfig()
    changes = {k: v for k, v in (("kind", args.mask_kind), ("acceleration", args.acceleration),
                                 ("center_fraction", args.center_fraction), ("path", args.mask_path))
               if v is not None}
    mask = replace(training_mask(model, cfg), **changes) if changes else None
    given = {k: getattr(args, k) for k in ("coil_mode", "slice_axis", "batch_size", "device", "fast",
                                           "zero_filled")
             if getattr(args, k) is not None}
    cfg = replace(cfg, mask=mask, **given)
    check_fields(cfg, rename=FLAGS)
    return replace(cfg, device=str(resolve_device(cfg.device)))


def run(args: argparse.Namespace) -> int:
    model, inputs = model_and_inputs(args)
    result = predict(model, inputs, args.out, config_from_args(args, model),
                     skip_bad=args.skip_bad, overwrite=args.overwrite, progress=not args.no_progress)
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {len(result.written)} volume(s) to {result.out}"
          + (f" ({len(result.resumed)} already complete from an earlier run)" if result.resumed else ""))
    if result.bad:
        print(f"skipped {len(result.bad)} bad input(s):")
        for path, problem in result.bad:
            print(f"  {problem}" if problem.startswith(path) else f"  {path}: {problem}")
    return 0
