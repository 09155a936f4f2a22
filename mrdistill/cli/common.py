"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse

from mrdistill.config import RunConfig, load_run_config


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--config FILE, --set key=value (repeatable), --overwrite, --no-progress."""
    p.add_argument("--config", required=True, help="YAML run config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.epochs=5 (repeatable)")
    p.add_argument("--preset", default=None,
                   help="apply a named preset from the config's `presets:` section (e.g. smoke)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = load_run_config(args.config, args.overrides, preset=args.preset)
    if args.no_progress:
        cfg.progress = False
    return cfg
