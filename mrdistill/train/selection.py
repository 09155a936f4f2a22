"""Which epoch a training stage keeps (`fit(select=...)`).

- "val_metric": the epoch with the best validation metric (`RunConfig.val_metric`, e.g. PSNR); right
  for a stage that optimises the output (its objective has a task term);
- "val_objective": the epoch with the lowest value of the stage's own objective on the validation
  set; right for a stage that does not optimise the output (attention transfer or FitNets hints
  alone), whose PSNR may fall while the loss it minimises falls;
- "last": the last epoch (no validation score picks the weights).

A higher `selection_score` is better for every rule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mrdistill.config.run import STAGE_SELECTIONS as SELECTIONS
from mrdistill.data.datasets import SliceDataset
from mrdistill.data.sample import collate_samples
LOWER_IS_BETTER = {"nmse", "hfen", "hfen_laplace", "loss"}


@torch.no_grad()
def validation_objective(model: nn.Module, objective: nn.Module, val_set: SliceDataset,
                         batch_size: int, device: str | torch.device) -> float:
    """Mean over validation slices of `objective(model, batch)["loss"]`, model and objective in
    eval mode (so nothing the objective keeps, e.g. a running average or a learning teacher,
    moves; a self-supervised objective scores with its fixed per-slice masks). Batches in data-set
    order, built without a DataLoader: no RNG state is touched."""
    modes = model.training, objective.training
    model.eval()
    objective.eval()
    total, count = 0.0, 0
    for start in range(0, len(val_set), batch_size):
        items = [val_set[i] for i in range(start, min(start + batch_size, len(val_set)))]
        loss = objective(model, collate_samples(items).to(device))["loss"]
        total += float(loss) * len(items)
        count += len(items)
    model.train(modes[0])
    objective.train(modes[1])
    return total / max(count, 1)


def selection_score(select: str, epoch: int, metric_name: str, metric: float,
                    objective: float | None) -> float:
    """The number a stage maximises over epochs under rule `select` (see the module docstring)."""
    if select == "last":
        return float(epoch)
    if select == "val_objective":
        assert objective is not None
        return -objective if math.isfinite(objective) else -math.inf
    return -metric if metric_name in LOWER_IS_BETTER else metric
