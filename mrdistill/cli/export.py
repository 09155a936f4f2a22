"""`mrdistill export`: a checkpoint to ONNX or TorchScript with data consistency inside the graph,
checked against the eager model on real slices before it is kept; writes FILE and FILE.json (the
model, its training mask, the input normalisation, the checkpoint's SHA-256, the parity found).
See docs/deploy.md for the graph's inputs and outputs."""

from __future__ import annotations

import argparse

from mrdistill.deploy.export import export_checkpoint


def run(args: argparse.Namespace) -> int:
    result = export_checkpoint(args.checkpoint, args.fmt, args.out, shape=args.shape, coils=args.coils,
                               mask_kind=args.mask_kind, tolerance=args.tolerance, overwrite=args.overwrite)
    print(f"wrote {result.path} ({args.fmt}, {result.form} DC) and {result.sidecar_path}")
    print(f"parity vs eager: max abs diff {result.parity:.2e} of the image max (tolerance {result.tolerance:g})")
    return 0
