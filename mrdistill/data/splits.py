"""Deterministic splits shared by the embedded corpus (`data.datasets`) and `prepare`
(`data.prepared`): which slab or volume goes to train/val/test, and even subsampling."""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

from mrdistill.errors import MrdistillError

SPLITS = ("train", "val", "test")

T = TypeVar("T")


def assign_slabs(n_slabs: int, fractions: list[float]) -> list[str]:
    """Deterministically spread slabs over the splits: each slab goes to the split furthest below
    its target share, so val and test slabs are interleaved through the volume."""
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise MrdistillError(f"split_fractions must be 3 non-negative numbers, got {fractions}")
    share = np.asarray(fractions, dtype=float) / sum(fractions)
    counts = np.zeros(3)
    out = []
    for k in range(n_slabs):
        deficit = share * (k + 1) - counts
        j = int(np.argmax(deficit))
        counts[j] += 1
        out.append(SPLITS[j])
    return out


def evenly_subsample(items: Sequence[T], limit: int | None) -> list[T]:
    """At most `limit` items, evenly spaced (deterministic)."""
    if limit is None or len(items) <= limit:
        return list(items)
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


def split_labeled(items: Sequence[T], labeled: int | None) -> tuple[list[T], list[T]]:
    """(labelled, undersampled-only): `labeled` of the training items, evenly spaced, keep their
    targets; the rest (empty when `labeled` is None or covers them all) are seen without.

    >>> split_labeled(list("abcdefg"), 3)
    (['a', 'd', 'g'], ['b', 'c', 'e', 'f'])
    """
    if labeled is None or labeled >= len(items):
        return list(items), []
    if labeled < 1:
        raise MrdistillError(f"labeled_train_slices must be at least 1, got {labeled}")
    keep = set(np.linspace(0, len(items) - 1, labeled).round().astype(int).tolist())
    return ([it for i, it in enumerate(items) if i in keep],
            [it for i, it in enumerate(items) if i not in keep])
