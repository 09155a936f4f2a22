"""`distill.cache_teacher`: a frozen teacher's outputs remembered per training input.

A frozen teacher in eval mode is a pure function of its input, so when every epoch shows the same
inputs (fixed training masks, no augmentation) its outputs can be computed once per slice and
reused; only float rounding can differ (a slice may run in a smaller batch the first time). Memory:
the cache holds every training slice's output image (and the requested features) on the device.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

from mrdistill.config import DataConfig
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput, input_kind


def input_key(*inputs: Tensor | None) -> str:
    """A content hash of one item's inputs (e.g. its k-space and mask)."""
    h = hashlib.sha1()
    for x in inputs:
        if x is not None:
            h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_cacheable(data: DataConfig) -> None:
    """Refuse `distill.cache_teacher` when the training inputs change between epochs."""
    if data.mask.fresh_train_masks:
        raise MrdistillError("distill.cache_teacher needs fixed training inputs, but "
                             "data.mask.fresh_train_masks draws new masks every epoch; "
                             "switch one of them off")
    if data.augment.enabled:
        raise MrdistillError("distill.cache_teacher needs fixed training inputs, but "
                             "data.augment draws new augmentations every epoch; "
                             "switch one of them off")


class CachedTeacher(nn.Module):
    """`teacher`'s outputs per input (content hash of each item's inputs), computed once.

    Called like the teacher: `(kspace, mask, *, return_features, smaps=None)` (or the low-res image
    and None for super-resolution teachers); only items not seen before run through the teacher.
    """

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.input_kind = input_kind(teacher)
        self.accepts_smaps = getattr(teacher, "accepts_smaps", False)
        self.memo: dict[tuple[str, bool], ReconOutput] = {}

    @torch.no_grad()
    def forward(self, x: Tensor, mask: Tensor | None, *, return_features: bool = False,
                smaps: Tensor | None = None) -> ReconOutput:
        n = x.shape[0]
        mask_n = None if mask is None else mask.expand(n, *mask.shape[1:])
        keys = [(input_key(x[i], None if mask_n is None else mask_n[i],
                           None if smaps is None else smaps[i]), return_features) for i in range(n)]
        missing = [i for i, k in enumerate(keys) if k not in self.memo]
        if missing:
            kwargs = {} if smaps is None else {"smaps": smaps[missing]}
            out = self.teacher(x[missing], None if mask_n is None else mask_n[missing],
                               return_features=return_features, **kwargs)
            for j, i in enumerate(missing):
                self.memo[keys[i]] = ReconOutput(out.image[j], {k: v[j] for k, v in out.features.items()})
        outs = [self.memo[k] for k in keys]
        features = {name: torch.stack([o.features[name] for o in outs]) for name in outs[0].features}
        return ReconOutput(torch.stack([o.image for o in outs]), features)
