"""`mrdistill evaluate`: score a run's best checkpoint on its test split (per-slice CSV + summary)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrdistill.config import load_run_config
from mrdistill.data.datasets import make_datasets
from mrdistill.errors import MrdistillError
from mrdistill.train.checkpoint import load_model
from mrdistill.train.evaluation import evaluate_models, write_evaluation


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics of a run's checkpoint on its test set",
                       description=__doc__)
    p.add_argument("--run", required=True, help="run directory (holds config.yaml and checkpoints/)")
    p.add_argument("--checkpoint", default="best.pt", help="file in <run>/checkpoints/")
    p.add_argument("--out", default=None, help="output folder (default: <run>/evaluation)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").is_file():
        raise MrdistillError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_run_config(run_dir / "config.yaml")
    model = load_model(run_dir / "checkpoints" / args.checkpoint, cfg.device)
    test = make_datasets(cfg.data, cfg.seed)["test"]
    ev = evaluate_models({"zero-filled": None, cfg.name: model}, test, cfg.device)
    out = Path(args.out) if args.out else run_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    print(write_evaluation(out, ev, f"{cfg.name}: evaluation", [f"checkpoint: {args.checkpoint}"]))
    print(f"\nwritten: {out}")
    return 0
