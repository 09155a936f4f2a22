"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrdistill.config import RunConfig, load_run_config
from mrdistill.errors import MrdistillError


def add_out_arg(p: argparse.ArgumentParser, what: str) -> None:
    """--out DIR for commands whose folder is <out_dir>/<name> of their config."""
    p.add_argument("--out", default=None,
                   help=f"the {what} folder (default: <out_dir>/<name> of the config); its last "
                        f"part becomes the name")


def split_out(out: str) -> tuple[str, str]:
    """--out DIR -> (out_dir, name) such that out_dir/name is DIR."""
    path = Path(out)
    if not path.name or path.name in (".", ".."):
        raise MrdistillError(f"--out {out!r}: name a folder, e.g. --out runs/my_run")
    return str(path.parent), path.name


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--config FILE, --set key=value (repeatable), --preset, --out, --overwrite, --no-progress."""
    p.add_argument("--config", required=True, help="YAML run config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.epochs=5 (repeatable)")
    p.add_argument("--preset", default=None,
                   help="apply a named preset from the config's `presets:` section (e.g. smoke)")
    add_out_arg(p, "run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = load_run_config(args.config, args.overrides, preset=args.preset)
    if args.no_progress:
        cfg.progress = False
    if args.out is not None:
        cfg.out_dir, cfg.name = split_out(args.out)
    return cfg
