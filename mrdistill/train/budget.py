"""Equal optimizer steps for a plain and a distilled student (the fair comparison of the demo and
the study's quality-speed front).

A plain student trains on the labelled slices only; a distilled one also sees the
undersampled-only slices (through the teacher), so its epochs are longer. `matched_budget` gives a
stage schedule exactly the plain student's number of optimizer steps and decays the learning rate
after the same share of that budget.
"""

from __future__ import annotations

import math
from typing import Any


def matched_stages(stages: list[dict[str, Any]], student_steps: int,
                   steps_per_epoch: int) -> list[dict[str, Any]]:
    """Give a schedule exactly the plain student's optimizer steps (its budget).

    The stages' `epochs` are read as shares of the budget: the total is the number of (longer,
    when undersampled-only slices are added) epochs that covers `student_steps`, split in those
    proportions; the last stage stops at the step that makes the total exactly `student_steps`.
    """
    if not stages:
        raise ValueError("no stages to match")
    total = max(len(stages), math.ceil(student_steps / steps_per_epoch))
    shares = [float(st["epochs"]) for st in stages]
    epochs = [max(1, round(total * w / sum(shares))) for w in shares[:-1]]
    last_steps = student_steps - sum(epochs) * steps_per_epoch
    if last_steps < 1:
        raise ValueError(f"the earlier stages already use {sum(epochs) * steps_per_epoch} of "
                         f"{student_steps} steps")
    epochs.append(math.ceil(last_steps / steps_per_epoch))
    matched = [{**st, "epochs": e} for st, e in zip(stages, epochs)]
    matched[-1]["max_steps"] = last_steps
    return matched


def matched_budget(stages: list[dict[str, Any]], student_optim: dict[str, Any], labeled: int,
                   seen: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(stages, optim) of a distilled student with the plain student's optimizer steps.

    stages: stage dicts whose `epochs` are shares; student_optim: the plain student's optim dict
    (`epochs`, `batch_size`, optional `step_size`); labeled: training slices with a target (what
    the plain student sees); seen: all training slices the distilled student sees. The learning
    rate decays after the same share of the whole budget as the plain student's (each stage
    restarts its optimizer and schedule).
    """
    batch = student_optim["batch_size"]
    student_steps = student_optim["epochs"] * math.ceil(labeled / batch)
    matched = matched_stages(stages, student_steps, math.ceil(seen / batch))
    share = student_optim.get("step_size", student_optim["epochs"]) / student_optim["epochs"]
    total = sum(st["epochs"] for st in matched)
    return matched, {**student_optim, "epochs": total, "step_size": max(1, round(share * total))}
