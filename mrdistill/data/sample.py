"""The batch type every data set yields and every model, loss and loop consumes."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor


class Sample(NamedTuple):
    """One slice (or, after `collate_samples`, a batch with a leading N axis).

    kspace:      complex64 (C, H, W)  acquired (masked) k-space, centred.
    mask:        float32 (1, 1, W) for 1-D Cartesian or (1, H, W) for 2-D; 1 = sampled.
    zero_filled: float32 (C_net, H, W) network-representation zero-filled image
                 (C_net = 1 in real mode, 2C in complex mode).
    target:      float32 (1, H, W) magnitude target, or None (self-supervised: no ground truth).
    max_value:   float32 () the volume max of the target (data range for PSNR/SSIM).
    volume:      volume id (str).
    slice_index: slice number within the volume (int).
    smaps:       complex64 (C, H, W) coil sensitivities, or None (single-coil data, or coils not
                 estimated); see `data.coils.estimate_smaps`.
    """

    kspace: Tensor
    mask: Tensor
    zero_filled: Tensor
    target: Tensor | None
    max_value: Tensor
    volume: str
    slice_index: int
    smaps: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Sample":
        """Move every tensor field to `device` (asynchronously from pinned memory with
        `non_blocking`)."""
        moved = [f.to(device, non_blocking=non_blocking) if isinstance(f, Tensor) else f for f in self]
        return Sample(*moved)


def collate_samples(items: Sequence[Sample]) -> Sample:
    """Stack a list of `Sample`s into a batch; `target` (`smaps`) stays None when any item has none."""
    targets = [s.target for s in items]
    smaps = [s.smaps for s in items]
    return Sample(
        kspace=torch.stack([s.kspace for s in items]),
        mask=torch.stack([s.mask for s in items]),
        zero_filled=torch.stack([s.zero_filled for s in items]),
        target=None if any(t is None for t in targets) else torch.stack(targets),  # type: ignore[arg-type]
        max_value=torch.stack([torch.as_tensor(s.max_value, dtype=torch.float32) for s in items]),
        volume=[s.volume for s in items],  # type: ignore[arg-type]
        slice_index=[s.slice_index for s in items],  # type: ignore[arg-type]
        smaps=None if any(m is None for m in smaps) else torch.stack(smaps),  # type: ignore[arg-type]
    )
