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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mrdistill.config import DataConfig, OptimConfig, check_fields
from mrdistill.data.datasets import SliceDataset
from mrdistill.data.sample import collate_samples
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.eval.metrics import volume_metrics
from mrdistill.models.native_conv import native_weight_grad
from mrdistill.train import distributed
from mrdistill.train.batches import loader_options, make_loader
from mrdistill.train.checkpoint import all_finite, model_payload, save_checkpoint, state_to_cpu
from mrdistill.train.inference import VolumeRecon, reconstruct
from mrdistill.train.optimizers import build_optimizer
from mrdistill.train.precision import Precision
from mrdistill.train.schedule import EpochScheduler
from mrdistill.train.selection import (LOWER_IS_BETTER, SELECTIONS, selection_score,
                                       validation_objective)
from mrdistill.train.state import (RESUME_KEY, FitResult, RunState, StagePosition, apply_hooks,
                                   describe, position_from)

__all__ = ["DivergenceError", "FitResult", "LOWER_IS_BETTER", "fit", "validation_score"]


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


def _grad_norm(params: list[nn.Parameter], clip: float | None) -> torch.Tensor:
    """The gradients' total 2-norm (clipped to `clip` when given; the norm before clipping)."""
    grads = [p.grad for p in params if p.grad is not None]
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class _Stage:
    """One `fit` call: optimizer, schedule, loader and counters, checkpointed as a whole."""

    def __init__(self, model: nn.Module, objective: nn.Module, train_set: Dataset, optim: OptimConfig,
                 run: RunState, *, stage: str, seed: int, lr: float, device: str | torch.device,
                 epochs: int, val_metric: str, select: str,
                 model_name: str, model_kwargs: dict[str, Any], meta: dict[str, Any],
                 data: DataConfig | None, ctx: distributed.DistContext, amp: Precision) -> None:
        self.model, self.objective, self.optim, self.run, self.stage = model, objective, optim, run, stage
        self.select, self.ctx, self.amp = select, ctx, amp
        self.device, self.model_name, self.model_kwargs, self.meta = device, model_name, model_kwargs, meta
        params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": params}]
        extra_groups = getattr(objective, "extra_param_groups", None)
        if callable(extra_groups):
            # Modules the objective trains besides the student but keeps out of `parameters()`,
            # e.g. a teacher that learns while teaching (distill.teacher_correction), at their own lr.
            groups += extra_groups(lr)
            params = params + [p for g in groups[1:] for p in g["params"]]
        self.params = params
        # Trained parameters DDP does not see (a teacher that learns while teaching).
        self.unwrapped = params[len(groups[0]["params"]):]
        self.opt = build_optimizer(groups, optim, lr)
        self.sched = EpochScheduler(self.opt, optim, epochs, val_metric)
        self.step_fn = distributed.wrap(model, objective, ctx, torch.device(device))
        self.loader = make_loader(train_set, optim.batch_size, seed,
                                  **loader_options(data, torch.device(device), ctx.rank, ctx.world_size))
        self.pos = StagePosition()
        self.best_model: dict[str, torch.Tensor] | None = None
        self.last_save = time.monotonic()
        self.slices = 0  # slices of the epoch's steps in this process (throughput only)

    # -- resume -----------------------------------------------------------------------------------
    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint written inside this stage."""
        section = checkpoint[RESUME_KEY]
        self.model.load_state_dict(checkpoint["model"])
        self.objective.load_state_dict(checkpoint["extra"])
        apply_hooks(self.objective, section["objective"])
        self.opt.load_state_dict(section["optimizer"])
        self.sched.load_state_dict(section["scheduler"])
        self.amp.load_state_dict(section.get("scaler") or {})
        self.pos = position_from(section)
        ranks = section.get("ranks") or {"world_size": 1}
        if ranks["world_size"] != self.ctx.world_size:
            raise MrdistillError(
                f"{self.run.last_good}: written by a run of {ranks['world_size']} process(es) "
                f"(torchrun ranks); resume it with the same number, not {self.ctx.world_size}")
        if self.ctx.enabled:  # each rank's own loss sums of the unfinished epoch
            self.pos.sums = ranks["sums"][self.ctx.rank]
        self.best_model = section["best_model"]

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

    # -- one step -----------------------------------------------------------------------------------
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
        dev = torch.device(self.device)
        bad = "loss" if distributed.any_rank(not bool(torch.isfinite(loss)), self.ctx, dev) else None
        if bad is None:
            self.amp.backward(loss)
            distributed.average_gradients(self.unwrapped, self.ctx)
            if self.amp.scaler is None and distributed.any_rank(
                    not bool(torch.isfinite(_grad_norm(self.params, self.optim.grad_clip))), self.ctx, dev):
                bad = "gradient"
        self.pos.batch += 1
        self.pos.step += 1
        if bad is not None:
            self.opt.zero_grad(set_to_none=True)
            self.nonfinite(bad)
            return
        if self.amp.scaler is None:
            self.opt.step()  # gradients already clipped by _grad_norm
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

    # -- checkpoints ----------------------------------------------------------------------------
    def due(self) -> bool:
        """A step checkpoint is due (every `checkpoint_every` steps, or `checkpoint_minutes`)."""
        every, minutes = self.optim.checkpoint_every, self.optim.checkpoint_minutes
        if every and self.pos.step % every == 0:
            return True
        if not minutes:
            return False
        # Saving is collective (the ranks' loss sums are gathered): rank 0's clock decides.
        late = time.monotonic() - self.last_save >= 60.0 * minutes
        return bool(distributed.from_main(float(late), self.ctx, torch.device(self.device)))

    def save(self, metric: dict[str, float], best: bool = False) -> None:
        """`last.pt` (full resume state) and, when `best`, `best.pt` first: a kill between the two
        resumes from the previous `last.pt` and writes the same `best.pt` again."""
        model_state = self.model.state_dict()
        if not all_finite(model_state):
            self.diverged("non-finite weights")
        payload = model_payload(self.model, self.model_name, self.model_kwargs, extra=self.objective,
                                epoch=self.pos.epoch, metric=metric, stage=self.stage, **self.meta)
        ckpt_dir = self.run.ckpt_dir
        section = self.run.section(self.stage, self.pos, self.best_model, self.opt, self.sched,
                                   self.objective, self.amp.state_dict())
        # The ranks' loss sums of the unfinished epoch differ (their data do): each gets its own back.
        section["ranks"] = {"world_size": self.ctx.world_size,
                            "sums": distributed.gather(self.pos.sums, self.ctx)}
        if self.ctx.is_main:  # under torchrun only rank 0 writes
            if best:
                save_checkpoint(ckpt_dir / "best.pt", payload)
            save_checkpoint(ckpt_dir / "last.pt", {**payload, RESUME_KEY: section})
        self.run.last_good = describe(ckpt_dir / "last.pt", section)
        self.last_save = time.monotonic()


def fit(model: nn.Module, objective: nn.Module, train_set: Dataset, val_set: SliceDataset,
        optim: OptimConfig, run_dir: Path, *, model_name: str, model_kwargs: dict[str, Any],
        seed: int = 0, val_metric: str = "psnr", device: str | torch.device = "cpu",
        epochs: int | None = None, lr: float | None = None, max_steps: int | None = None,
        stage: str = "train", select: str = "val_metric", data: DataConfig | None = None,
        progress: bool = True, meta: dict[str, Any] | None = None,
        run: RunState | None = None) -> FitResult:
    """Train `model` with `objective`; validate every epoch; keep `last.pt` and `best.pt`.

    `best.pt` holds the epoch that `select` keeps (`train.selection`: the best `val_metric` on
    `val_set`, the lowest objective on `val_set`, or the last epoch); its weights are loaded back
    into `model`. `epochs`/`lr`/`max_steps` override the optimiser config for this stage; `data`
    gives the loading options (workers). `run` follows a multi-stage run (and resumes it); None:
    a fresh one-stage run in `run_dir`. Under torchrun the ranks train data-parallel
    (`train.distributed`); only rank 0 writes.
    """
    check_choice("epoch selection", select, SELECTIONS)
    check_fields(optim, "optim")  # configs built in code are checked too
    run = run or RunState(run_dir)
    epochs = optim.epochs if epochs is None else epochs
    ctx = distributed.context(device)
    device = distributed.local_device(device, ctx)
    amp = Precision(optim.precision, device)
    model.to(device)
    objective.to(device)
    if optim.channels_last:  # 4-D weights only; activations follow the weights' layout
        model.to(memory_format=torch.channels_last)
    setup = getattr(objective, "setup", None)
    if callable(setup):
        # Student-side adapters (e.g. FitNets regressors) take their sizes from one forward pass;
        # they must exist before the optimizer is built. One stored sample: the loader's RNG is
        # left untouched, and bad feature pairs fail here, before any training.
        setup(model, collate_samples([train_set[0]]).to(device))
        objective.to(device)
    st = _Stage(model, objective, train_set, optim, run, stage=stage, seed=seed,
                lr=optim.lr if lr is None else lr, device=device, epochs=epochs,
                val_metric=val_metric, select=select, model_name=model_name,
                model_kwargs=model_kwargs, meta=meta or {}, data=data, ctx=ctx, amp=amp)
    checkpoint = run.begin(stage)
    if checkpoint is not None:
        st.restore(checkpoint)
    max_steps = optim.max_steps if max_steps is None else max_steps
    total_steps = epochs * len(st.loader) if max_steps is None else min(epochs * len(st.loader), max_steps)
    bar = tqdm(total=total_steps, initial=st.pos.step, desc=stage,
               disable=not (progress and ctx.is_main), leave=False)
    # channels_last on the CPU: each part of a conv by oneDNN or a compiled kernel, whichever is
    # faster there (models.native_conv).
    with native_weight_grad(model, enabled=optim.channels_last):
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
            _end_epoch(st, model, val_set, val_metric, time.perf_counter() - start, bar)
    bar.close()
    distributed.barrier(ctx)  # the other ranks may read what rank 0 has just written
    result = st.pos.result(select)
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
