"""Batched reconstruction of whole volumes (for validation, evaluation and reports)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mrdistill.data.sample import collate_samples
from mrdistill.physics.fft import magnitude


@dataclass
class VolumeRecon:
    """One volume's slices, in slice order: float32 (S, H, W) each."""

    prediction: torch.Tensor
    target: torch.Tensor | None
    zero_filled: torch.Tensor
    max_value: float
    slices: list[int] = field(default_factory=list)


@torch.no_grad()
def reconstruct(model: nn.Module | None, dataset: Dataset, device: str | torch.device = "cpu",
                batch_size: int = 8) -> tuple[dict[str, VolumeRecon], float]:
    """Run `model` over `dataset` -> ({volume: VolumeRecon}, seconds per slice of model time).

    model=None gives the zero-filled reconstruction as the prediction.
    """
    if model is not None:
        model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_samples)
    parts: dict[str, list[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor, float]]] = {}
    seconds, count = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        zf = magnitude(batch.zero_filled)
        if model is None:
            pred = zf
        else:
            start = time.perf_counter()
            pred = magnitude(model(batch.kspace, batch.mask).image)
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
        count += pred.shape[0]
        for j, vol in enumerate(batch.volume):
            tgt = None if batch.target is None else batch.target[j, 0].cpu()
            parts.setdefault(vol, []).append(
                (batch.slice_index[j], pred[j, 0].cpu(), tgt, zf[j, 0].cpu(), float(batch.max_value[j])))
    out = {}
    for vol, items in parts.items():
        items.sort(key=lambda t: t[0])
        targets = [t[2] for t in items]
        out[vol] = VolumeRecon(
            prediction=torch.stack([t[1] for t in items]),
            target=None if any(t is None for t in targets) else torch.stack(targets),  # type: ignore[misc]
            zero_filled=torch.stack([t[3] for t in items]),
            max_value=items[0][4],
            slices=[t[0] for t in items],
        )
    return out, seconds / max(count, 1)
