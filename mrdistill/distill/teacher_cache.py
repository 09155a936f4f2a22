"""The one cache of a frozen teacher's outputs, keyed by sample identity (`distill.cache_teacher`
and `distill.adaptive.cache_teacher`, one policy for both).

A frozen teacher in eval mode is a pure function of its input. With masks fixed per slice (the
default: `data.mask.fresh_train_masks` off) a slice's input is the same in every epoch, so the
teacher runs once per slice and its outputs are reused; only float rounding can differ (a slice
may run in a smaller batch the first time). With fresh masks every epoch no output can be reused:
caching is then off, which `cache_allowed` says once (a warning), for either user.

The key is the sample's identity as the data set gives it: volume id, slice index, and what was
asked of the teacher (features or not, hooked module paths). These are host-side fields of the
batch, so a lookup costs no device-to-host copy; the mask is the third part of a slice's identity
and is kept with each entry: a hit compares it with the batch's mask on the device, counts
mismatches there, and the count is read (one synchronisation) every `verify_every` lookups, so a
caller who shows one slice with two masks is refused instead of silently served the wrong outputs.
Memory: every training slice's output image (and the requested features) stays on the device.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from typing import NamedTuple

import torch
from torch import Tensor

from mrdistill.config import DataConfig
from mrdistill.data.sample import Sample
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput


class _Entry(NamedTuple):
    image: Tensor
    features: dict[str, Tensor]
    mask: Tensor


def cache_allowed(enabled: bool, data: DataConfig, key: str) -> bool:
    """The one policy: cache when `enabled` (config `key`) and the training inputs are fixed; with
    `data.mask.fresh_train_masks` or `data.augment` (new inputs every epoch) say once that caching
    is off and return False."""
    changing = ("data.mask.fresh_train_masks draws new masks" if data.mask.fresh_train_masks else
                "data.augment draws new augmentations" if data.augment.enabled else None)
    if enabled and changing is not None:
        warnings.warn(f"{key}: {changing} every epoch, so no teacher output can be reused; the "
                      f"teacher runs on every step", stacklevel=2)
        return False
    return enabled


def select(sample: Sample, index: list[int]) -> Sample:
    """The items `index` of a batch: its tensors with a leading batch axis indexed on their device
    (a mask shared by the batch, (1, ...), stays as it is), its id lists picked on the host."""
    n = len(sample.volume)
    pick = torch.tensor(index, device=sample.kspace.device)

    def part(field: object) -> object:
        if isinstance(field, Tensor) and field.dim() and field.shape[0] == n:
            return field.index_select(0, pick)
        return [field[i] for i in index] if isinstance(field, list) else field

    return Sample(*(part(f) for f in sample))  # type: ignore[arg-type]


class TeacherCache:
    """Outputs of one frozen teacher per (volume, slice, what was asked): see the module
    docstring. `outputs(sample, variant, run)` returns what `run(sample)` would, running it
    only on the items not seen before."""

    def __init__(self, verify_every: int = 256) -> None:
        self.entries: dict[tuple[str, int, Hashable], _Entry] = {}
        self.verify_every = verify_every
        self._lookups = 0
        self._mismatches: Tensor | None = None  # on the device, read every `verify_every` lookups

    def __len__(self) -> int:
        return len(self.entries)

    def outputs(self, sample: Sample, variant: Hashable,
                run: Callable[[Sample], ReconOutput]) -> ReconOutput:
        """The teacher's output for batch `sample`; `variant` names what `run` returns (e.g. with
        features, which hooks); `run(part)` runs the teacher on a part of the batch."""
        n = sample.kspace.shape[0]
        keys = [(str(v), int(s), variant) for v, s in zip(sample.volume, sample.slice_index)]
        masks = sample.mask.expand(n, *sample.mask.shape[1:])
        missing = [i for i, k in enumerate(keys) if k not in self.entries]
        seen = [i for i, k in enumerate(keys) if k in self.entries]
        if seen:
            self._count_mismatches(torch.stack([self.entries[keys[i]].mask for i in seen]), masks[seen])
        if missing:
            out = run(sample if len(missing) == n else select(sample, missing))
            for j, i in enumerate(missing):
                self.entries[keys[i]] = _Entry(out.image[j], {k: v[j] for k, v in out.features.items()},
                                               masks[i])
        chosen = [self.entries[k] for k in keys]
        features = {name: torch.stack([e.features[name] for e in chosen]) for name in chosen[0].features}
        return ReconOutput(torch.stack([e.image for e in chosen]), features)

    def _count_mismatches(self, stored: Tensor, shown: Tensor) -> None:
        differ = (stored != shown).flatten(1).any(1).sum()
        self._mismatches = differ if self._mismatches is None else self._mismatches + differ
        self._lookups += 1
        if self._lookups % self.verify_every == 0:
            self.verify()

    def verify(self) -> None:
        """Raise `MrdistillError` if a cached slice came back with another mask (one sync)."""
        if self._mismatches is not None and int(self._mismatches):
            raise MrdistillError("the teacher cache saw a slice again with another mask than its cached "
                                 "outputs were computed for; caching needs fixed masks per slice "
                                 "(set cache_teacher: false)")
