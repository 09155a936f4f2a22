"""Batched reconstruction of whole volumes (for validation, evaluation and reports)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from mrdistill.data.crop import crop_like
from mrdistill.data.sample import Sample, collate_samples
from mrdistill.models.base import input_kind, run_model
from mrdistill.accel import EagerInference, optimise_for_inference
from mrdistill.physics.fft import magnitude


# Fast inference modules of one model by slice shape (C, H, W); None where it has no fast path.
FastPaths = dict[tuple[int, ...], "nn.Module | None"]


@dataclass
class VolumeRecon:
    """One volume's slices, in slice order: float32 (S, H, W) each."""

    prediction: torch.Tensor
    target: torch.Tensor | None
    zero_filled: torch.Tensor
    max_value: float
    slices: list[int] = field(default_factory=list)


def _crop_to(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`x` (N, 1, H, W) centre-cropped to the target's size when it is larger in both axes."""
    if x.shape[-2] >= target.shape[-2] and x.shape[-1] >= target.shape[-1]:
        return crop_like(x, target)
    return x


def _same_shape_batches(dataset: Dataset, batch_size: int) -> Iterator[Sample]:
    """Consecutive items in batches of at most `batch_size` that never mix shapes (volumes of a
    fastMRI folder differ in k-space width, and stacking needs one shape)."""
    pending: list[Sample] = []

    def key(s: Sample) -> tuple:
        return (tuple(s.kspace.shape), tuple(s.zero_filled.shape),
                None if s.target is None else tuple(s.target.shape))

    for i in range(len(dataset)):  # type: ignore[arg-type]
        item = dataset[i]
        if pending and (len(pending) == batch_size or key(item) != key(pending[0])):
            yield collate_samples(pending)
            pending = []
        pending.append(item)
    if pending:
        yield collate_samples(pending)


@torch.no_grad()
def reconstruct(model: nn.Module | None, dataset: Dataset, device: str | torch.device = "cpu",
                batch_size: int = 8, fast: bool = False,
                fast_paths: FastPaths | None = None) -> tuple[dict[str, VolumeRecon], float]:
    """Run `model` over `dataset` -> ({volume: VolumeRecon}, seconds per slice of model time).

    model=None gives the zero-filled reconstruction as the prediction. fast: on CPU, run models
    that have one on the fast inference path (`optimise_for_inference`, built once per slice
    shape, outside the timed part; the same images up to float32 rounding, ~1e-6 relative).
    fast_paths: where those are kept, to reuse them over several calls with the same, unchanged
    model (e.g. one per file in `predict`); a new one per call by default.
    """
    if model is not None:
        model.eval()
    loader = _same_shape_batches(dataset, batch_size)
    parts: dict[str, list[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor, float]]] = {}
    fast_paths = {} if fast_paths is None else fast_paths
    seconds, count = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        zf = magnitude(batch.zero_filled)
        if model is None:
            pred = zf
        else:
            runner = _fast_path(model, batch, fast_paths) if fast else None
            start = time.perf_counter()
            out = run_model(model, batch) if runner is None else runner(batch.kspace, batch.mask)
            pred = magnitude(out.image)
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
        if batch.target is not None:  # fastMRI: score the target-sized centre (e.g. 320x320)
            pred, zf = _crop_to(pred, batch.target), _crop_to(zf, batch.target)
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


def _fast_path(model: nn.Module, batch: Sample, cache: FastPaths) -> nn.Module | None:
    """`optimise_for_inference(model)` for this batch's slice shape (built once per shape, kept in
    `cache`), or None where the model has no fast path for it (then the eager model runs)."""
    if batch.kspace.device.type != "cpu" or input_kind(model) != "kspace" or batch.smaps is not None:
        return None
    key = tuple(batch.kspace.shape[1:])
    if key not in cache:
        fast = optimise_for_inference(model, batch.kspace, batch.mask)
        cache[key] = None if isinstance(fast, EagerInference) else fast
    return cache[key]


@torch.no_grad()
def fast_seconds_per_slice(model: nn.Module, dataset: Dataset, device: str | torch.device = "cpu",
                           batch_size: int = 8, passes: int = 3) -> float | None:
    """Seconds per slice of `reconstruct(..., fast=True)`: the fastest of `passes` timed passes
    after an untimed one (so first-call costs such as building DC matrices are not counted), or
    None where this model has no fast path for some batch of this device and data (it would time
    the eager model again).
    """
    cache: FastPaths = {}
    batches = [b.to(device) for b in _same_shape_batches(dataset, batch_size)]
    if not batches or any(_fast_path(model, b, cache) is None for b in batches):
        return None
    times = [reconstruct(model, dataset, device, batch_size, fast=True, fast_paths=cache)[1]
             for _ in range(passes + 1)]
    return min(times[1:])
