"""Arguments shared by several subcommands (standard library and `mrdistill.config` only: the
parser is built without torch, see `cli.parsers`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrdistill.config import RunConfig, TeacherConfig, apply_overrides, from_dict, load_run_config
from mrdistill.errors import MrdistillError

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: %(default)s)"


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
    """--config FILE, --set key=value (repeatable), --preset, --out, --overwrite, --resume,
    --device, --no-progress."""
    p.add_argument("--config", required=True, help="YAML run config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.epochs=5 (repeatable)")
    p.add_argument("--preset", default=None,
                   help="apply a named preset from the config's `presets:` section (e.g. smoke)")
    add_out_arg(p, "run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    add_resume_arg(p)
    add_device_arg(p, None)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_resume_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its newest checkpoint (checkpoints/last.pt)")


def add_device_arg(p: argparse.ArgumentParser, default: str | None = "auto",
                   default_text: str = "the config's device") -> None:
    """--device auto|cpu|cuda|cuda:N (checked by `mrdistill.device.resolve_device`); a None
    default leaves the choice to the config (`default_text` says which)."""
    help_text = DEVICE_HELP if default is not None else DEVICE_HELP.replace("%(default)s", default_text)
    p.add_argument("--device", default=default, help=help_text)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = load_run_config(args.config, args.overrides, preset=args.preset)
    if args.no_progress:
        cfg.progress = False
    if args.device is not None:
        cfg.device = args.device
    if args.out is not None:
        cfg.out_dir, cfg.name = split_out(args.out)
    return cfg


def foreign_model_from_args(args: argparse.Namespace) -> TeacherConfig | None:
    """--model NAME --set KEY=VALUE... --weights FILE --format F (`parsers.add_foreign_model_args`)
    -> the `TeacherConfig` that `distill.teacher` would hold for the same model (checked as it is),
    or None when none of these options was given. `--format mrdistill --weights FILE` alone is an
    mrdistill checkpoint with its own model."""
    if args.model is None and args.weights is None:
        if args.model_sets:
            raise MrdistillError("--set gives arguments of a foreign model: add --model NAME and --weights FILE")
        return None
    if args.weights is None:
        raise MrdistillError(f"--model {args.model}: give its weights with --weights FILE")
    if args.model is None and args.weights_format != "mrdistill":
        raise MrdistillError(f"--weights {args.weights}: name the model the weights belong to with "
                             f"--model NAME (`mrdistill list`), e.g. --model varnet")
    spec = {"model": args.model or "", "kwargs": apply_overrides({}, args.model_sets),
            "weights": args.weights, "format": args.weights_format}
    return from_dict(TeacherConfig, spec, "--model")
