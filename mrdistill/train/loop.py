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
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from mrdistill.config import OptimConfig
from mrdistill.data.datasets import SliceDataset
from mrdistill.data.sample import collate_samples
from mrdistill.eval.metrics import volume_metrics
from mrdistill.errors import check_choice
from mrdistill.train.checkpoint import model_payload, save_checkpoint
from mrdistill.train.inference import reconstruct
from mrdistill.train.schedule import EpochScheduler
from mrdistill.train.selection import SELECTIONS, selection_score, validation_objective


class GroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches drawn within index groups (so a batch never mixes groups); the batch order
    is shuffled too. Uses its own generator: global RNG state is never touched."""

    def __init__(self, groups: list[list[int]], batch_size: int, generator: torch.Generator) -> None:
        self.groups, self.batch_size, self.generator = groups, batch_size, generator

    def _batches(self) -> list[list[int]]:
        out = []
        for group in self.groups:
            order = torch.randperm(len(group), generator=self.generator).tolist()
            out += [[group[i] for i in order[k:k + self.batch_size]]
                    for k in range(0, len(group), self.batch_size)]
        return [out[i] for i in torch.randperm(len(out), generator=self.generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return sum(math.ceil(len(g) / self.batch_size) for g in self.groups)


def make_loader(train_set: Dataset, batch_size: int, seed: int) -> DataLoader:
    """Shuffled training batches; grouped when the data set has `groups()` (labelled/unlabelled)."""
    gen = torch.Generator().manual_seed(seed)
    if hasattr(train_set, "groups"):
        sampler = GroupedBatchSampler(train_set.groups(), batch_size, gen)
        return DataLoader(train_set, batch_sampler=sampler, generator=gen, collate_fn=collate_samples)
    return DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=gen,
                      collate_fn=collate_samples)


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
        stage: str = "train", select: str = "val_metric",
        progress: bool = True, meta: dict[str, Any] | None = None) -> FitResult:
    """Train `model` with `objective`; validate every epoch; keep `last.pt` and `best.pt`.

    `best.pt` holds the epoch that `select` keeps (`train.selection`: the best `val_metric` on
    `val_set`, the lowest objective on `val_set`, or the last epoch); its weights are loaded back
    into `model`. `epochs`/`lr`/`max_steps` override the optimiser config for this stage.
    """
    check_choice("epoch selection", select, SELECTIONS)
    epochs = optim.epochs if epochs is None else epochs
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
    loader = make_loader(train_set, optim.batch_size, seed)
    ckpt_dir = run_dir / "checkpoints"
    best = FitResult(best_epoch=-1, best_value=math.nan, select=select)
    best_score = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    total_steps = epochs * len(loader)
    max_steps = optim.max_steps if max_steps is None else max_steps
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    step = 0
    bar = tqdm(total=total_steps, desc=stage, disable=not progress, leave=False)
    for epoch in range(epochs):
        if step >= total_steps:
            break
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        batches = 0
        start = time.perf_counter()
        for batch in loader:
            if step >= total_steps:
                break
            losses = objective(model, batch.to(device))
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, optim.grad_clip)
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            batches += 1
            step += 1
            bar.update(1)
        value = validation_score(model, val_set, val_metric, device)
        sched.step(value)
        metric = {val_metric: value}
        if select == "val_objective":
            metric["objective"] = validation_objective(model, objective, val_set,
                                                       optim.batch_size, device)
        row = {"stage": stage, "epoch": epoch + 1, "step": step,
               **{k: v / max(batches, 1) for k, v in sums.items()},
               **{f"val_{k}": v for k, v in metric.items()}, "lr": opt.param_groups[0]["lr"],
               "seconds": round(time.perf_counter() - start, 3)}
        best.history.append(row)
        append_log(run_dir / "log.csv", row)
        bar.set_postfix(loss=f"{row['loss']:.4g}", val=f"{value:.4g}")
        payload = model_payload(model, model_name, model_kwargs, extra=objective,
                                epoch=epoch + 1, metric=metric, stage=stage, **(meta or {}))
        save_checkpoint(ckpt_dir / "last.pt", payload)
        score = selection_score(select, epoch + 1, val_metric, value, metric.get("objective"))
        if score > best_score:
            best_score = score
            best.best_epoch = epoch + 1
            best.best_value = metric["objective"] if select == "val_objective" else value
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            save_checkpoint(ckpt_dir / "best.pt", payload)
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return best
