"""Data-parallel training under `torchrun` with PyTorch's own DistributedDataParallel.

`torchrun --nproc_per_node N -m mrdistill.cli.main train ...` starts N processes; each calls
`context()`, which joins the process group (NCCL on CUDA, gloo on CPU) from torchrun's environment.
Without torchrun (or with one process) everything here is a no-op and `fit` runs as before.

Division of labour between the ranks:
- batches: every rank draws the same global batches and trains on its own disjoint part
  (`train.batches.GroupedBatchSampler`); DDP averages the gradients, so N ranks with batch b take
  the steps one process takes with batch N*b;
- files: only rank 0 writes (run folder, checkpoints, log, reports); the others wait at barriers;
- validation: every rank scores the whole validation set (no collective inside, so a slow rank can
  never leave another waiting in one), then rank 0's value is broadcast so that all ranks keep the
  same best epoch;
- the frozen teacher is not wrapped: it runs inside each rank on that rank's samples;
- decisions: a non-finite loss or gradient on any rank makes every rank skip that step (or stop
  with `DivergenceError`) together (`any_rank`), and a time-based checkpoint follows rank 0's clock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from mrdistill.data.sample import Sample
from mrdistill.errors import MrdistillError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context(device: str | torch.device = "cpu") -> DistContext:
    """Join torchrun's process group on the first call (idempotent); a single process otherwise.

    device: the run's device; "cuda" selects NCCL and this rank's GPU (LOCAL_RANK), else gloo.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(),
                           int(os.environ.get("LOCAL_RANK", "0")))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or not dist.is_available():
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def is_main() -> bool:
    """True in rank 0 and in every single-process run: the process that writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def local_device(device: str | torch.device, ctx: DistContext) -> torch.device:
    """The rank's device: a bare "cuda" becomes this rank's GPU under torchrun."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return dev


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. until rank 0 has written a file the others read)."""
    if ctx.enabled:
        dist.barrier()


def on_main(fn: Callable[[], T], ctx: DistContext) -> T | None:
    """Run `fn` on rank 0 only (e.g. claiming the run folder) while the other ranks wait; its
    `MrdistillError` is raised on every rank, so no rank is left waiting for one that failed.
    Returns `fn()` on rank 0, None elsewhere."""
    if not ctx.enabled:
        return fn()
    result, message = None, [None]
    if ctx.is_main:
        try:
            result = fn()
        except MrdistillError as exc:
            message = [str(exc)]
    dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise MrdistillError(message[0])
    return result


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class TrainStep(nn.Module):
    """model + objective as one module, so DDP sees (and averages the gradients of) the student and
    the objective's student-side modules (KD adapters) together. The teacher stays out: objectives
    keep it unregistered."""

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, sample: Sample) -> dict[str, Tensor]:
        return self.objective(self.model, sample)


def wrap(model: nn.Module, objective: nn.Module, ctx: DistContext,
         device: torch.device) -> nn.Module:
    """`step(sample) -> losses`: `TrainStep`, inside DDP when the job has several ranks."""
    step = TrainStep(model, objective)
    if not ctx.enabled:
        return step
    # Objectives with modules of their own may leave some parameters without a gradient on a step
    # (e.g. alternating teacher correction); DDP must then look for them.
    own = any(p.requires_grad for p in objective.parameters()) or \
        callable(getattr(objective, "extra_param_groups", None))
    return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=own)


def average_gradients(params: list[Tensor], ctx: DistContext) -> None:
    """Average, over ranks, the gradients of trained parameters that DDP does not see (a teacher
    that learns while teaching, kept out of the objective's `parameters()`)."""
    if not ctx.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= ctx.world_size


def mean_over_ranks(sums: dict[str, float], ctx: DistContext,
                    device: torch.device) -> dict[str, float]:
    """Per-key mean over ranks of float statistics (e.g. an epoch's summed losses)."""
    if not ctx.enabled or not sums:
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def any_rank(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any: a decision all ranks must take together
    (skip a step, stop the run), so that none is left waiting in a collective the others skipped."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj: T, ctx: DistContext) -> list[T]:
    """Every rank's `obj` (picklable), in rank order, on every rank; `[obj]` in one process."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def from_main(value: float, ctx: DistContext, device: torch.device) -> float:
    """Rank 0's value on every rank."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
