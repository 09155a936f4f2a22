"""`mrdistill predict`: reconstruct fastMRI HDF5 files or image volumes (NIfTI, DICOM series,
PNG/JPG folders, NPY) with a checkpoint. fastMRI input gives one <name>.h5 per volume with dataset
`reconstruction` (slices, H, W) float32, ready for `mrdistill evaluate --predictions-path`."""

from __future__ import annotations

import argparse
from dataclasses import replace

from mrdistill.cli.common import add_device_arg
from mrdistill.config import PredictConfig, check_fields
from mrdistill.device import resolve_device
from mrdistill.physics.masks import MASK_KINDS
from mrdistill.train.predict import predict, training_mask


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="reconstruct fastMRI files or image volumes with a checkpoint",
                       description=__doc__)
    p.add_argument("inputs", nargs="+", help="files or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by train/distill")
    p.add_argument("--out", required=True, help="output folder")
    d = PredictConfig()
    p.add_argument("--mask", dest="mask_kind", choices=MASK_KINDS, default=None,
                   help="mask for fully sampled inputs (default: the one the checkpoint's model was "
                        f"trained with; {d.fallback_mask.kind} for checkpoints that record none); "
                        "stored masks are used as acquired")
    p.add_argument("--acceleration", type=float, default=None,
                   help="undersampling factor (default: the checkpoint's training mask's)")
    p.add_argument("--center-fraction", type=float, default=None,
                   help="fully sampled central fraction (default: the checkpoint's training mask's)")
    p.add_argument("--mask-path", default=None, help="a .npy mask (W,) or (H, W) for --mask fixed")
    p.add_argument("--coil-mode", choices=("combine", "multi"), default=None,
                   help="multi-coil input: one virtual coil or all coils (default: as trained)")
    p.add_argument("--slice-axis", type=int, default=None,
                   help=f"NIfTI axis along which slices are taken (default: {d.slice_axis})")
    p.add_argument("--batch-size", type=int, default=None, help=f"slices per batch (default: {d.batch_size})")
    add_device_arg(p, None, d.device)
    p.add_argument("--no-fast", dest="fast", action="store_false", default=None,
                   help="run the eager model instead of the fast CPU inference path (DC-CNN on CPU)")
    p.add_argument("--zero-filled", action="store_true", default=None,
                   help="write the zero-filled baseline (the same masks and scaling the model gets) "
                        "instead of the model's reconstruction")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable inputs, list them, go on")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


# PredictConfig fields -> the options that set them (for messages)
FLAGS = {"mask.kind": "--mask", "mask.acceleration": "--acceleration", "mask.center_fraction":
         "--center-fraction", "mask.path": "--mask-path", "coil_mode": "--coil-mode",
         "slice_axis": "--slice-axis", "batch_size": "--batch-size", "device": "--device"}


def config_from_args(args: argparse.Namespace) -> PredictConfig:
    """`PredictConfig` defaults, replaced by the options given; mask options modify the
    checkpoint's training mask (no mask option: predict uses that mask as it is)."""
    cfg = PredictConfig()
    changes = {k: v for k, v in (("kind", args.mask_kind), ("acceleration", args.acceleration),
                                 ("center_fraction", args.center_fraction), ("path", args.mask_path))
               if v is not None}
    mask = replace(training_mask(args.checkpoint, cfg), **changes) if changes else None
    given = {k: getattr(args, k) for k in ("coil_mode", "slice_axis", "batch_size", "device", "fast",
                                           "zero_filled")
             if getattr(args, k) is not None}
    cfg = replace(cfg, mask=mask, **given)
    check_fields(cfg, rename=FLAGS)
    return replace(cfg, device=str(resolve_device(cfg.device)))


def run(args: argparse.Namespace) -> int:
    result = predict(args.checkpoint, args.inputs, args.out, config_from_args(args),
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
