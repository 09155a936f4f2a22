"""Training batches: shuffled (and grouped) batch order, worker processes, and the rank's share.

Results do not depend on how batches are loaded: the batch order comes from one generator seeded
from the run seed (identical on every rank), each sample is a pure function of (index, epoch)
(masks are seeded per slice, see `data.datasets.SliceDataset`), and the epoch travels with the
index to the worker, so persistent workers never read a stale epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mrdistill.config import DataConfig
from mrdistill.data.sample import Sample, collate_samples
from mrdistill.errors import MrdistillError

# The worker seeds come from their own generator, offset from the run seed so that they never
# coincide with the batch-order generator's stream.
WORKER_SEED_OFFSET = 0x5EED


class GroupedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Shuffled batches of `(epoch, index)` keys drawn within index groups (a batch never mixes
    groups; the batch order is shuffled too), or, with `groups=None`, plain shuffled batches of
    `range(n)`. Uses its own generator: global RNG state is never touched.

    Under DDP every rank draws the same global batches of `batch_size * world_size` and keeps its
    part of each (`rank_part`), so the ranks' shards are disjoint and the global batches equal a
    one-process run with `batch_size * world_size`.
    """

    def __init__(self, groups: list[list[int]] | None, batch_size: int, generator: torch.Generator,
                 *, size: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise MrdistillError(f"optim.batch_size must be at least 1, got {batch_size}")
        self.groups, self.size, self.generator = groups, size, generator
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.epoch = 0
        self.skip = 0  # the next pass starts this many batches in (a stage resumed mid-epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch sent with every index (it selects fresh training masks in the data set)."""
        self.epoch = epoch

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def _global_batches(self) -> list[list[int]]:
        g, step = self.generator, self.global_batch
        # The DataLoader used to draw its worker base seed from this generator (after the grouped
        # order, before the plain one, as RandomSampler is lazy); drawing it here at the same point
        # keeps the batch order of runs made before workers existed.
        if self.groups is None:  # the order RandomSampler + BatchSampler gave
            torch.empty((), dtype=torch.int64).random_(generator=g)
            order = torch.randperm(self.size, generator=g).tolist()
            torch.randperm(self.size, generator=g)  # RandomSampler's closing draw, kept likewise
            return [order[k:k + step] for k in range(0, self.size, step)]
        out = []
        for group in self.groups:
            order = torch.randperm(len(group), generator=g).tolist()
            out += [[group[i] for i in order[k:k + step]] for k in range(0, len(group), step)]
        out = [out[i] for i in torch.randperm(len(out), generator=g).tolist()]
        torch.empty((), dtype=torch.int64).random_(generator=g)
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # The whole epoch's order is drawn first, so skipped batches consume the generator as
        # trained ones do, and are never loaded.
        batches, skip, self.skip = self._global_batches(), self.skip, 0
        for batch in batches[skip:]:
            yield [(self.epoch, i) for i in rank_part(batch, self.rank, self.world_size)]

    def __len__(self) -> int:
        if self.groups is None:
            return math.ceil(self.size / self.global_batch)
        return sum(math.ceil(len(g) / self.global_batch) for g in self.groups)


def rank_part(batch: list[int], rank: int, world_size: int) -> list[int]:
    """Rank `rank`'s contiguous part of a global batch. A short last batch is split as evenly as
    it goes and topped up from its own items (same group), so every rank gets the same number of
    samples and no collective waits for a rank without data."""
    k = math.ceil(len(batch) / world_size)
    part = batch[rank * k:(rank + 1) * k]
    return part + [batch[(rank * k + j) % len(batch)] for j in range(len(part), k)]


class EpochIndexed(Dataset):
    """`dataset[(epoch, i)]`: sets the epoch (if the data set has epochs) and returns item i, in
    whichever process loads it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        epoch, i = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[i]


def seed_worker(worker_id: int) -> None:
    """Seed a worker's numpy and Python RNGs from its torch seed (which the DataLoader derives
    from the run seed and the worker id), for any third-party code that draws from them; our
    data sets draw only from per-sample seeded generators."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(train_set: Dataset, batch_size: int, seed: int, *, num_workers: int = 0,
                persistent_workers: bool = True, pin_memory: bool = False, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """Shuffled training batches (grouped when the data set has `groups()`: labelled and
    undersampled-only slices never share a batch), this rank's share of every global batch.

    Iterate after `loader.batch_sampler.set_epoch(epoch)`. The data order is decided by
    `loader.batch_sampler.generator` (seeded from `seed`; its state is what a resume restores) and
    `loader.batch_sampler.skip` makes the next pass start that many batches in.
    """
    gen = torch.Generator().manual_seed(seed)
    groups = train_set.groups() if hasattr(train_set, "groups") else None
    sampler = GroupedBatchSampler(groups, batch_size, gen, size=len(train_set),  # type: ignore[arg-type]
                                  rank=rank, world_size=world_size)
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra = {"worker_init_fn": seed_worker, "persistent_workers": persistent_workers}
    return DataLoader(EpochIndexed(train_set), batch_sampler=sampler, collate_fn=collate_samples,
                      num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed + WORKER_SEED_OFFSET), **extra)


def loader_options(data: DataConfig | None, device: torch.device, rank: int = 0,
                   world_size: int = 1) -> dict[str, Any]:
    """`make_loader`'s keyword arguments from the data config (workers; pinned memory on CUDA)
    and this process's rank."""
    data = data or DataConfig()
    return {"num_workers": data.num_workers, "persistent_workers": data.persistent_workers,
            "pin_memory": data.pin_memory and device.type == "cuda", "rank": rank,
            "world_size": world_size}
