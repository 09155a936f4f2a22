"""Data: the embedded real corpus, k-space simulation, data sets and file formats."""

from mrdistill.data.sample import Sample, collate_samples

__all__ = ["Sample", "collate_samples"]
