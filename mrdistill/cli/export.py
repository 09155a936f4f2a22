"""`mrdistill export`: a checkpoint to ONNX or TorchScript with data consistency inside the graph,
checked against the eager model on real slices before it is kept; writes FILE and FILE.json (the
model, its training mask, the input normalisation, the checkpoint's SHA-256, the parity found).
See docs/deploy.md for the graph's inputs and outputs."""

from __future__ import annotations

import argparse

from mrdistill.deploy.export import DEFAULT_TOLERANCE, FORMATS, export_checkpoint
from mrdistill.physics.masks import MASK_KINDS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="a checkpoint to ONNX or TorchScript, parity-checked",
                       description=__doc__)
    p.add_argument("checkpoint", help="a checkpoint written by train/distill")
    p.add_argument("--format", dest="fmt", required=True, choices=FORMATS, help="file format")
    p.add_argument("--out", required=True, help="the file to write (FILE.json is written next to it)")
    p.add_argument("--shape", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help="k-space grid of the graph (default: the training image size)")
    p.add_argument("--coils", type=int, default=None,
                   help="coils of the k-space input (VarNet, U-Net, MoDL with coil maps or per-coil images; "
                        "default: the training data's, else 1); another count than the training data's is refused")
    p.add_argument("--mask", dest="mask_kind", choices=MASK_KINDS, default=None,
                   help="mask kind the graph is for (default: the checkpoint's training mask): 1-D kinds "
                        "get the FFT-free column DC, 2-D kinds the DFT-matmul DC")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"parity tolerance, max abs difference / image max (default {DEFAULT_TOLERANCE:g})")
    p.add_argument("--overwrite", action="store_true", help="replace FILE and FILE.json if they exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = export_checkpoint(args.checkpoint, args.fmt, args.out, shape=args.shape, coils=args.coils,
                               mask_kind=args.mask_kind, tolerance=args.tolerance, overwrite=args.overwrite)
    print(f"wrote {result.path} ({args.fmt}, {result.form} DC) and {result.sidecar_path}")
    print(f"parity vs eager: max abs diff {result.parity:.2e} of the image max (tolerance {result.tolerance:g})")
    return 0
