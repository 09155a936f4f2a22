"""Resuming a stage: its parts and position loaded back from a checkpoint written inside it
(the checkpoint's layout: `train.state`)."""

from __future__ import annotations

from typing import Any

import torch

from mrdistill.errors import MrdistillError
from mrdistill.train.distributed import DistContext
from mrdistill.train.plan import StageParts
from mrdistill.train.state import RESUME_KEY, StagePosition, apply_hooks, position_from


def check_world_size(section: dict[str, Any], ctx: DistContext, where: str) -> None:
    """A stage resumes only with the number of torchrun ranks it was written with (each rank's
    unfinished loss sums and data part depend on it)."""
    ranks = section.get("ranks") or {"world_size": 1}
    if ranks["world_size"] != ctx.world_size:
        raise MrdistillError(f"{where}: written by a run of {ranks['world_size']} process(es) "
                             f"(torchrun ranks); resume it with the same number, not {ctx.world_size}")


def restore_stage(checkpoint: dict[str, Any], parts: StageParts, ctx: DistContext,
                  where: str) -> tuple[StagePosition, dict[str, torch.Tensor] | None]:
    """Load model, objective (weights and hooks), optimiser, schedule and scaler from
    `checkpoint` into `parts`; returns (the stage's position, its best weights so far). `where`
    names the checkpoint in messages. Under torchrun each rank gets its own loss sums back."""
    section = checkpoint[RESUME_KEY]
    check_world_size(section, ctx, where)
    parts.model.load_state_dict(checkpoint["model"])
    parts.objective.load_state_dict(checkpoint["extra"])
    apply_hooks(parts.objective, section["objective"])
    parts.opt.load_state_dict(section["optimizer"])
    parts.sched.load_state_dict(section["scheduler"])
    parts.amp.load_state_dict(section.get("scaler") or {})
    pos = position_from(section)
    if ctx.enabled:  # each rank's own loss sums of the unfinished epoch
        pos.sums = section["ranks"]["sums"][ctx.rank]
    return pos, section["best_model"]
