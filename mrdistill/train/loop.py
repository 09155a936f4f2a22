"""The one training loop: teacher, student and every distillation stage go through `fit`.

What differs between stages is the objective (`distill.objective.DistillObjective` or any module with
the same call signature `objective(model, sample) -> {"loss": ..., ...}`), never the loop.

A run survives being killed: `last.pt` is written every `optim.checkpoint_every` steps (or
`optim.checkpoint_minutes` of work) and at each epoch end, with everything `train.state` needs to
continue bit-for-bit; a resumed stage skips the batches it already took. A non-finite loss,
gradient, weight or validation score never reaches a checkpoint: after `optim.skip_nonfinite`
skipped steps the run stops with `DivergenceError`, its last good checkpoint intact. Under torchrun
these decisions are collective: one rank's non-finite loss makes every rank skip (or stop at) that step.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mrdistill.config import check_fields
from mrdistill.data.datasets import SliceDataset
from mrdistill.data.sample import collate_samples
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.eval.metrics import volume_metrics
from mrdistill.accel import channels_last_applies, fast_training
from mrdistill.train import distributed
from mrdistill.train.batches import loader_options, make_loader
from mrdistill.train.checkpoint import state_to_cpu
from mrdistill.train.collective import checkpoint_due, gradient_is_bad, loss_is_bad
from mrdistill.train.inference import VolumeRecon, reconstruct
from mrdistill.train.params import make_optimizer, trained_params
from mrdistill.train.plan import StagePlan, StageParts
from mrdistill.train.precision import Precision
from mrdistill.train.resume import restore_stage
from mrdistill.train.schedule import EpochScheduler
from mrdistill.train.selection import (LOWER_IS_BETTER, SELECTIONS, selection_score,
                                       validation_objective)
from mrdistill.train.stage_checkpoint import NonFiniteWeights, write_stage
from mrdistill.train.state import FitResult, RunState, StagePosition

__all__ = ["DivergenceError", "FitResult", "LOWER_IS_BETTER", "StagePlan", "fit", "validation_score"]


class DivergenceError(MrdistillError):
    """Training produced a non-finite loss, gradient, weight or validation score."""


def validate(model: nn.Module, val_set: SliceDataset, metric: str,
             device: str | torch.device) -> tuple[float, dict[str, VolumeRecon]]:
    """(mean over validation volumes of a volume metric, fastMRI definitions; the reconstructions).
    NaN when any volume's value is NaN (a diverged model)."""
    recons, _ = reconstruct(model, val_set, device)
    values = [volume_metrics(r.target, r.prediction, r.max_value, names=(metric,))[metric]
              for r in recons.values()]
    return float(np.mean(values)), recons


def validation_score(model: nn.Module, val_set: SliceDataset, metric: str,
                     device: str | torch.device) -> float:
    """Mean over validation volumes of a volume metric (fastMRI definitions)."""
    return validate(model, val_set, metric, device)[0]


def _panel(recons: dict[str, VolumeRecon]) -> torch.Tensor:
    """zero-filled | target | output | |error| of the first validation volume's middle slice,
    float (H, 4W), scaled by the volume's max value (a low-resolution input is resized to H, W)."""
    r = next(iter(recons.values()))
    i = r.prediction.shape[0] // 2
    out = r.prediction[i].float()
    target = r.target[i].float() if r.target is not None else torch.zeros_like(out)
    zero_filled = F.interpolate(r.zero_filled[i][None, None].float(), size=out.shape, mode="nearest")[0, 0]
    parts = [zero_filled, target, out, (out - target).abs()]
    return torch.cat(parts, dim=-1) / max(r.max_value, 1e-12)


def uses_channels_last(setting: bool | str, device: torch.device) -> bool:
    """`optim.channels_last` resolved for `device`: true/false as given, "auto" where the fast CPU
    training path applies (`accel.channels_last_applies`)."""
    return channels_last_applies(device) if setting == "auto" else bool(setting)


class _Stage:
    """One `fit` call: its parts (optimiser, schedule, ...), loader and counters; the pieces it runs
    on (optimiser construction, resume, collective decisions, checkpoint writing) live in
    `train.params`, `train.resume`, `train.collective` and `train.stage_checkpoint`."""

    def __init__(self, model: nn.Module, objective: nn.Module, train_set: Dataset, plan: StagePlan,
                 run: RunState, ctx: distributed.DistContext, amp: Precision) -> None:
        self.plan, self.optim, self.run, self.stage = plan, plan.optim, run, plan.stage
        self.model, self.objective, self.select, self.ctx = model, objective, plan.select, ctx
        self.device = torch.device(plan.device)
        trained = trained_params(model, objective, plan.stage_lr)
        self.params, self.unwrapped = trained.params, trained.unwrapped
        opt = make_optimizer(trained, plan.stage_lr, plan.optim)
        sched = EpochScheduler(opt, plan.optim, plan.stage_epochs, plan.val_metric)
        self.parts = StageParts(model, objective, opt, sched, amp)
        self.opt, self.sched, self.amp = opt, sched, amp
        self.step_fn = distributed.wrap(model, objective, ctx, self.device)
        self.loader = make_loader(train_set, plan.optim.batch_size, plan.seed,
                                  **loader_options(plan.data, self.device, ctx.rank, ctx.world_size))
        self.pos = StagePosition()
        self.best_model: dict[str, torch.Tensor] | None = None
        self.last_save = time.monotonic()
        self.slices = 0  # slices of the epoch's steps in this process (throughput only)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint written inside this stage."""
        self.pos, self.best_model = restore_stage(checkpoint, self.parts, self.ctx, str(self.run.last_good))

    def start_epoch(self, epoch: int) -> None:
        """Seek the data order to where the stage stands (the middle of an epoch when resumed)."""
        sampler = self.loader.batch_sampler
        sampler.set_epoch(epoch)
        self.slices = 0
        gen = sampler.generator
        if self.pos.loader_rng is None:  # a fresh stage
            self.pos.loader_rng = gen.get_state()
        else:  # the epoch's order again; resumed mid-epoch, minus the batches already taken
            gen.set_state(self.pos.loader_rng)
            sampler.skip = self.pos.batch

    def step(self, batch: Any) -> None:
        """One optimizer step on `batch`; a non-finite loss or gradient is skipped (counted) while
        `optim.skip_nonfinite` allows, else the run stops. With float16 an overflowing gradient is
        the GradScaler's business (it skips the step and lowers the scale), not divergence."""
        with self.amp.autocast():
            losses = self.step_fn(batch.to(self.device, non_blocking=True))
        self.slices += len(batch.volume)
        self.opt.zero_grad(set_to_none=True)
        loss = losses["loss"]
        # Decided by all ranks together: a rank that skipped backward alone would leave the others
        # waiting in DDP's gradient all-reduce. (With float16 the GradScaler's inf check sees the
        # all-reduced gradients, the same on every rank.)
        bad = "loss" if loss_is_bad(loss, self.ctx, self.device) else None
        if bad is None:
            self.amp.backward(loss)
            distributed.average_gradients(self.unwrapped, self.ctx)
            if self.amp.scaler is None and gradient_is_bad(self.params, self.optim.grad_clip,
                                                           self.ctx, self.device):
                bad = "gradient"
        self.pos.batch += 1
        self.pos.step += 1
        if bad is not None:
            self.opt.zero_grad(set_to_none=True)
            self.nonfinite(bad)
            return
        if self.amp.scaler is None:
            self.opt.step()  # gradients already clipped by gradient_is_bad
        else:
            self.amp.step(self.opt, self.params, self.optim.grad_clip)
        # One device-to-host copy for all terms (float64 holds float32/bf16 values exactly, so
        # the sums are those of float(v) per term).
        values = dict(zip(losses, torch.stack([v.detach().double() for v in losses.values()]).tolist()))
        for k, v in values.items():
            self.pos.sums[k] = self.pos.sums.get(k, 0.0) + v
        self.pos.good += 1
        self.run.log.scalars(self.global_step, values, "train")
        self.run.log.scalars(self.global_step, {"lr": self.opt.param_groups[0]["lr"]}, "train")

    def nonfinite(self, what: str) -> None:
        if self.pos.skipped < self.optim.skip_nonfinite:
            self.pos.skipped += 1
            self.pos.epoch_skipped += 1
            return
        self.diverged(f"non-finite {what} at step {self.pos.step}")

    def diverged(self, what: str) -> None:
        last = self.run.last_good or "none written yet"
        raise DivergenceError(f"{self.stage}: {what} (epoch {self.pos.epoch + 1}); stopped. "
                              f"Last good checkpoint: {last}")

    @property
    def global_step(self) -> int:
        return self.run.step_offset + self.pos.step

    def due(self) -> bool:
        """A step checkpoint is due (`collective.checkpoint_due`)."""
        return checkpoint_due(self.pos.step, self.optim.checkpoint_every, self.optim.checkpoint_minutes,
                              self.last_save, self.ctx, self.device)

    def save(self, metric: dict[str, float], best: bool = False) -> None:
        """`last.pt` (and `best.pt` when `best`): `stage_checkpoint.write_stage`."""
        try:
            self.run.last_good = write_stage(self.run, self.plan, self.parts, self.pos, self.best_model,
                                             self.ctx, metric, best)
        except NonFiniteWeights:
            self.diverged("non-finite weights")
        self.last_save = time.monotonic()


def _prepare(model: nn.Module, objective: nn.Module, train_set: Dataset, device: torch.device,
             channels_last: bool) -> None:
    """Model and objective on `device` (the model in channels_last when asked); the objective's
    student-side adapters built (`objective.setup`), before the optimiser sees the parameters."""
    model.to(device)
    objective.to(device)
    if channels_last:  # 4-D weights only; activations follow the weights' layout
        model.to(memory_format=torch.channels_last)
    setup = getattr(objective, "setup", None)
    if callable(setup):
        # Student-side adapters (e.g. FitNets regressors) take their sizes from one forward pass;
        # they must exist before the optimizer is built. One stored sample: the loader's RNG is
        # left untouched, and bad feature pairs fail here, before any training.
        setup(model, collate_samples([train_set[0]]).to(device))
        objective.to(device)


def fit(model: nn.Module, objective: nn.Module, train_set: Dataset, val_set: SliceDataset,
        plan: StagePlan, run: RunState | Path) -> FitResult:
    """Train `model` with `objective` as `plan` says; validate every epoch; keep `last.pt` and
    `best.pt`.

    `best.pt` holds the epoch that `plan.select` keeps (`train.selection`: the best
    `plan.val_metric` on `val_set`, the lowest objective on `val_set`, or the last epoch); its
    weights are loaded back into `model`. `run`: the `RunState` of a multi-stage run (resumed
    inside the stage it was in), or the folder of a fresh one-stage run. Under torchrun the ranks
    train data-parallel (`train.distributed`); only rank 0 writes.

    >>> import tempfile
    >>> from mrdistill.config import DataConfig, OptimConfig
    >>> from mrdistill.data.build import make_datasets
    >>> from mrdistill.distill import DistillObjective
    >>> from mrdistill.models import build_model
    >>> data = make_datasets(DataConfig(image_size=32, max_train_slices=4, max_eval_slices=2, slab=2))
    >>> model = build_model("dccnn", cascades=1, convs=3, channels=8, seed=0)
    >>> plan = StagePlan(OptimConfig(epochs=1, batch_size=2), model_name="dccnn",
    ...                  model_kwargs={"cascades": 1, "convs": 3, "channels": 8}, progress=False)
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result = fit(model, DistillObjective(), data["train"], data["val"], plan, out)
    >>> result.best_epoch, result.steps
    (1, 2)
    """
    check_choice("epoch selection", plan.select, SELECTIONS)
    check_fields(plan.optim, "optim")  # configs built in code are checked too
    run = run if isinstance(run, RunState) else RunState(Path(run))
    epochs = plan.stage_epochs
    ctx = distributed.context(plan.device)
    device = distributed.local_device(plan.device, ctx)
    plan = replace(plan, device=device)
    amp = Precision(plan.optim.precision, device)
    channels_last = uses_channels_last(plan.optim.channels_last, device)
    _prepare(model, objective, train_set, device, channels_last)
    st = _Stage(model, objective, train_set, plan, run, ctx, amp)
    checkpoint = run.begin(plan.stage)
    if checkpoint is not None:
        st.restore(checkpoint)
    max_steps = plan.stage_max_steps
    total_steps = epochs * len(st.loader) if max_steps is None else min(epochs * len(st.loader), max_steps)
    bar = tqdm(total=total_steps, initial=st.pos.step, desc=plan.stage,
               disable=not (plan.progress and ctx.is_main), leave=False)
    # channels_last on the CPU: each part of a conv by oneDNN or a compiled kernel, whichever is
    # faster there (accel.fast_training).
    with fast_training(model, enabled=channels_last):
        while st.pos.epoch < epochs and st.pos.step < total_steps:
            st.start_epoch(st.pos.epoch)
            model.train()
            start = time.perf_counter()
            for batch in st.loader:
                if st.pos.step >= total_steps:
                    break
                st.step(batch)
                bar.update(1)
                if st.pos.step < total_steps and st.due():
                    st.save({})
            _end_epoch(st, model, val_set, plan.val_metric, time.perf_counter() - start, bar)
    bar.close()
    distributed.barrier(ctx)  # the other ranks may read what rank 0 has just written
    result = st.pos.result(plan.select)
    run.end(result)
    if st.best_model is not None:
        model.load_state_dict(st.best_model)
    return result


def _end_epoch(st: _Stage, model: nn.Module, val_set: SliceDataset, val_metric: str,
               seconds: float, bar: Any) -> None:
    """Close an epoch: validation, LR schedule, log row, checkpoints (best.pt when the selection
    rule keeps this epoch)."""
    pos = st.pos
    # Every rank validates the whole set; rank 0's numbers decide, so all keep the same epoch.
    value, recons = validate(model, val_set, val_metric, st.device)
    value = distributed.from_main(value, st.ctx, torch.device(st.device))
    if not math.isfinite(value):
        st.diverged(f"non-finite validation {val_metric} ({value})")
    st.sched.step(value)
    metric = {val_metric: value}
    if st.select == "val_objective":
        metric["objective"] = distributed.from_main(validation_objective(
            model, st.objective, val_set, st.optim.batch_size, st.device), st.ctx, torch.device(st.device))
        if not math.isfinite(metric["objective"]):
            st.diverged(f"non-finite validation objective ({metric['objective']})")
    pos.epoch += 1
    sums = distributed.mean_over_ranks(pos.sums, st.ctx, torch.device(st.device))
    row = {"stage": st.stage, "epoch": pos.epoch, "step": pos.step,
           **{k: v / max(pos.good, 1) for k, v in sums.items()},
           **{f"val_{k}": v for k, v in metric.items()}, "lr": st.opt.param_groups[0]["lr"],
           "skipped_nonfinite": pos.epoch_skipped, "seconds": round(seconds, 3)}
    pos.history.append(row)
    st.run.log.append(row)
    st.run.log.scalars(st.global_step, metric, "val")
    st.run.log.scalars(st.global_step, {"slices_per_s": st.slices / max(seconds, 1e-9)},
                       "throughput")
    if st.run.log.tensorboard:
        st.run.log.image(st.global_step, f"val/{st.stage}", _panel(recons))
    bar.set_postfix(loss=f"{row.get('loss', math.nan):.4g}", val=f"{value:.4g}")
    pos.batch, pos.good, pos.sums, pos.epoch_skipped = 0, 0, {}, 0
    pos.loader_rng = st.loader.batch_sampler.generator.get_state()  # where the next epoch's order starts
    score = selection_score(st.select, pos.epoch, val_metric, value, metric.get("objective"))
    improved = score > pos.best_score
    if improved:
        pos.best_epoch, pos.best_score = pos.epoch, score
        pos.best_value = metric["objective"] if st.select == "val_objective" else value
        st.best_model = state_to_cpu(model.state_dict())
    st.save(metric, best=improved)
