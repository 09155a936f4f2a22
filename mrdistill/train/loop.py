"""The one training loop: teacher, student and every distillation stage go through `fit`.

What differs between stages is the objective (`distill.objective.DistillObjective` or any module with
the same call signature `objective(model, sample) -> {"loss": ..., ...}`), never the loop.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mrdistill.config import DataConfig, OptimConfig
from mrdistill.data.datasets import SliceDataset
from mrdistill.data.sample import collate_samples
from mrdistill.eval.metrics import volume_metrics
from mrdistill.errors import check_choice
from mrdistill.train import distributed
from mrdistill.train.batches import loader_options, make_loader
from mrdistill.train.checkpoint import model_payload, save_checkpoint
from mrdistill.train.inference import reconstruct
from mrdistill.train.precision import Precision
from mrdistill.train.schedule import EpochScheduler
from mrdistill.train.selection import SELECTIONS, selection_score, validation_objective


@dataclass
class FitResult:
    """`best_epoch` is the epoch kept (1-based), `best_value` its score under `select`: the
    validation metric ("val_metric", "last") or the validation objective ("val_objective")."""

    best_epoch: int
    best_value: float
    select: str = "val_metric"
    history: list[dict[str, Any]] = field(default_factory=list)


def validation_score(model: nn.Module, val_set: SliceDataset, metric: str,
                     device: str | torch.device) -> float:
    """Mean over validation volumes of a volume metric (fastMRI definitions)."""
    recons, _ = reconstruct(model, val_set, device)
    values = [volume_metrics(r.target, r.prediction, r.max_value, names=(metric,))[metric]
              for r in recons.values()]
    return float(np.mean(values))


def append_log(path: Path, row: dict[str, Any]) -> None:
    """Append one row to log.csv (header written with the first row)."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def fit(model: nn.Module, objective: nn.Module, train_set: Dataset, val_set: SliceDataset,
        optim: OptimConfig, run_dir: Path, *, model_name: str, model_kwargs: dict[str, Any],
        seed: int = 0, val_metric: str = "psnr", device: str | torch.device = "cpu",
        epochs: int | None = None, lr: float | None = None, max_steps: int | None = None,
        stage: str = "train", select: str = "val_metric", data: DataConfig | None = None,
        progress: bool = True, meta: dict[str, Any] | None = None) -> FitResult:
    """Train `model` with `objective`; validate every epoch; keep `last.pt` and `best.pt`.

    `best.pt` holds the epoch that `select` keeps (`train.selection`: the best `val_metric` on
    `val_set`, the lowest objective on `val_set`, or the last epoch); its weights are loaded back
    into `model`. `epochs`/`lr`/`max_steps` override the optimiser config for this stage; `data`
    gives the loading options (workers). Under torchrun the ranks train data-parallel
    (`train.distributed`); only rank 0 writes.
    """
    check_choice("epoch selection", select, SELECTIONS)
    epochs = optim.epochs if epochs is None else epochs
    ctx = distributed.context(device)
    device = distributed.local_device(device, ctx)
    amp = Precision(optim.precision, device)
    model.to(device)
    objective.to(device)
    setup = getattr(objective, "setup", None)
    if callable(setup):
        # Student-side adapters (e.g. FitNets regressors) take their sizes from one forward pass;
        # they must exist before the optimizer is built. One stored sample: the loader's RNG is
        # left untouched, and bad feature pairs fail here, before any training.
        setup(model, collate_samples([train_set[0]]).to(device))
        objective.to(device)
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": params}]
    extra_groups = getattr(objective, "extra_param_groups", None)
    if callable(extra_groups):
        # Modules the objective trains besides the student but keeps out of `parameters()`, e.g. a
        # teacher that learns while teaching (distill.teacher_correction), at their own lr.
        groups += extra_groups(optim.lr if lr is None else lr)
        params = params + [p for g in groups[1:] for p in g["params"]]
    opt = torch.optim.Adam(groups, lr=optim.lr if lr is None else lr, weight_decay=optim.weight_decay)
    sched = EpochScheduler(opt, optim, epochs, val_metric)
    step_fn = distributed.wrap(model, objective, ctx, device)
    loader = make_loader(train_set, optim.batch_size, seed,
                         **loader_options(data, device, ctx.rank, ctx.world_size))
    ckpt_dir = run_dir / "checkpoints"
    best = FitResult(best_epoch=-1, best_value=math.nan, select=select)
    best_score = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    total_steps = epochs * len(loader)
    max_steps = optim.max_steps if max_steps is None else max_steps
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    step = 0
    bar = tqdm(total=total_steps, desc=stage, disable=not (progress and ctx.is_main), leave=False)
    for epoch in range(epochs):
        if step >= total_steps:
            break
        loader.batch_sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        batches = 0
        start = time.perf_counter()
        for batch in loader:
            if step >= total_steps:
                break
            with amp.autocast():
                losses = step_fn(batch.to(device, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            amp.backward(losses["loss"])
            distributed.average_gradients(params[len(groups[0]["params"]):], ctx)
            amp.step(opt, params, optim.grad_clip)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            batches += 1
            step += 1
            bar.update(1)
        sums = distributed.mean_over_ranks(sums, ctx, device)
        # Every rank validates the whole set; rank 0's numbers decide, so all keep the same epoch.
        value = distributed.from_main(validation_score(model, val_set, val_metric, device), ctx, device)
        sched.step(value)
        metric = {val_metric: value}
        if select == "val_objective":
            metric["objective"] = distributed.from_main(validation_objective(
                model, objective, val_set, optim.batch_size, device), ctx, device)
        row = {"stage": stage, "epoch": epoch + 1, "step": step,
               **{k: v / max(batches, 1) for k, v in sums.items()},
               **{f"val_{k}": v for k, v in metric.items()}, "lr": opt.param_groups[0]["lr"],
               "seconds": round(time.perf_counter() - start, 3)}
        best.history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4g}", val=f"{value:.4g}")
        payload = model_payload(model, model_name, model_kwargs, extra=objective,
                                epoch=epoch + 1, metric=metric, stage=stage, **(meta or {}))
        score = selection_score(select, epoch + 1, val_metric, value, metric.get("objective"))
        improved = score > best_score
        if improved:
            best_score = score
            best.best_epoch = epoch + 1
            best.best_value = metric["objective"] if select == "val_objective" else value
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if ctx.is_main:
            append_log(run_dir / "log.csv", row)
            save_checkpoint(ckpt_dir / "last.pt", payload)
            if improved:
                save_checkpoint(ckpt_dir / "best.pt", payload)
    bar.close()
    distributed.barrier(ctx)  # the other ranks may read what rank 0 has just written
    if best_state is not None:
        model.load_state_dict(best_state)
    return best
