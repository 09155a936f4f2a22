"""Writing a stage's checkpoints: `best.pt` (the kept epoch's model) and `last.pt` (model plus the
full resume state, `train.state`)."""

from __future__ import annotations


import torch

from mrdistill.train import distributed
from mrdistill.train.checkpoint import all_finite, model_payload, save_checkpoint
from mrdistill.train.distributed import DistContext
from mrdistill.train.plan import StagePlan, StageParts
from mrdistill.train.state import RESUME_KEY, RunState, StagePosition, describe


class NonFiniteWeights(Exception):
    """The model holds non-finite weights: nothing was written."""


def write_stage(run: RunState, plan: StagePlan, parts: StageParts, pos: StagePosition,
                best_model: dict[str, torch.Tensor] | None, ctx: DistContext,
                metric: dict[str, float], best: bool = False) -> str:
    """Write `last.pt` and, when `best`, `best.pt` first (a kill between the two resumes from the
    previous `last.pt` and writes the same `best.pt` again); only rank 0 writes, every rank takes
    part (the ranks' loss sums are gathered). Returns the new `last.pt` in words
    (`state.describe`). Raises `NonFiniteWeights` before writing anything when a weight is not
    finite."""
    if not all_finite(parts.model.state_dict()):
        raise NonFiniteWeights()
    payload = model_payload(parts.model, plan.model_name, plan.model_kwargs, extra=parts.objective,
                            epoch=pos.epoch, metric=metric, stage=plan.stage, **plan.meta)
    section = run.section(plan.stage, pos, best_model, parts.opt, parts.sched, parts.objective,
                          parts.amp.state_dict())
    # The ranks' loss sums of the unfinished epoch differ (their data do): each gets its own back.
    section["ranks"] = {"world_size": ctx.world_size, "sums": distributed.gather(pos.sums, ctx)}
    if ctx.is_main:  # under torchrun only rank 0 writes
        if best:
            save_checkpoint(run.ckpt_dir / "best.pt", payload)
        save_checkpoint(run.ckpt_dir / "last.pt", {**payload, RESUME_KEY: section})
    return describe(run.ckpt_dir / "last.pt", section)
