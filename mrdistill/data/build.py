"""The one module that builds data sets by kind, so the format modules never import each other.

Layering (each line imports only from the lines above it):
    splits, sample, simulate, coils, crop, fastmri_io, volumes ...    (leaves)
    datasets (embedded corpus), prepared (`prepare`), fastmri (HDF5 folders, also prepared ones),
    measured (`prepare --from measured`)
    superres (super-resolution slices over the embedded corpus)
    build (this module): by `DataConfig.dataset` and by task

Every builder returns {"train", "val", "test"} (and "unlabeled" with `labeled_train_slices`).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from mrdistill.config import DataConfig
from mrdistill.data.datasets import SliceDataset, check_augment, check_coils, make_embedded_datasets
from mrdistill.data.fastmri import FastMRISliceDataset, make_file_datasets
from mrdistill.data.fastmri_index import index_folder
from mrdistill.data.measured import ARCHIVES, measured_dir, read_measured_manifest
from mrdistill.data.splits import evenly_subsample, split_labeled
from mrdistill.data.superres import SRDataset, make_sr_datasets
from mrdistill.errors import MrdistillError, check_choice

DATASET_KINDS = ("embedded", "fastmri", "prepared", "measured")

ReconDataset = SliceDataset | FastMRISliceDataset


def make_datasets(cfg: DataConfig, seed: int = 0) -> dict[str, ReconDataset]:
    """Reconstruction data sets of kind `cfg.dataset`: the embedded corpus (`data.datasets`) or
    fastMRI-layout HDF5 folders, downloaded or written by `prepare` (`data.fastmri`)."""
    check_choice("data.dataset", cfg.dataset, DATASET_KINDS)
    check_coils(cfg)
    check_augment(cfg)
    if cfg.dataset == "embedded":
        return dict(make_embedded_datasets(cfg, seed))
    if cfg.dataset == "measured":
        return dict(make_measured_datasets(cfg, seed))
    return dict(make_file_datasets(cfg, seed))


def make_measured_datasets(cfg: DataConfig, seed: int = 0) -> dict[str, FastMRISliceDataset]:
    """train/val/test over the measured k-space (`data.measured.prepare_measured`): pyqmri's
    flip angles split by `cfg.measured` (whole contrasts held out), the twix phantom in test; with
    `cfg.labeled_train_slices`, that many training contrasts (evenly spaced) keep their targets and
    the rest go to "unlabeled"."""
    m = cfg.measured
    if cfg.mode != "complex":
        raise MrdistillError("measured k-space is complex: set data.mode: complex")
    if set(m.val) & set(m.test):
        raise MrdistillError(f"data.measured: val {m.val} and test {m.test} share flip angle(s) "
                             f"{sorted(set(m.val) & set(m.test))}")
    root = Path(cfg.path) if cfg.path else measured_dir()
    read_measured_manifest(root)
    fm = cfg.fastmri
    found = index_folder(root, fm.cache_dir, skip_bad=False, time_limit=fm.metadata_time_limit).volumes
    names = {Path(v.path).name: k for k, v in enumerate(found)}
    vfa, phantom = ARCHIVES["pyqmri"].output, ARCHIVES["twixtools"].output
    if vfa not in names or (m.phantom and phantom not in names):
        raise MrdistillError(f"{root}: incomplete measured data (has {sorted(names)}); run "
                             f"`mrdistill prepare --from measured --overwrite`")
    contrasts = range(found[names[vfa]].num_slices)
    split = {"val": list(m.val), "test": list(m.test),
             "train": [c for c in contrasts if c not in set(m.val) | set(m.test)]}
    limits = {"train": cfg.max_train_slices, "val": cfg.max_eval_slices, "test": cfg.max_eval_slices}
    out = {}
    for name, picks in split.items():
        if not picks or max(picks) >= len(contrasts):
            raise MrdistillError(f"data.measured: the {name} split needs flip angle indices in "
                                 f"[0, {len(contrasts) - 1}], got {picks}")
        items = [(names[vfa], c) for c in picks] + ([(names[phantom], 0)] if name == "test" and m.phantom else [])
        out[name] = FastMRISliceDataset(found, cfg, name, seed, challenge="multicoil",
                                        items=evenly_subsample(items, limits[name]))
    labeled, rest = split_labeled(out["train"].items(), cfg.labeled_train_slices)
    if rest:  # the site setting: a few fully sampled contrasts, the rest seen undersampled only
        out["train"] = FastMRISliceDataset(found, cfg, "train", seed, challenge="multicoil", items=labeled)
        out["unlabeled"] = FastMRISliceDataset(found, cfg, "train", seed, with_target=False,
                                               challenge="multicoil", items=rest)
    return out


def make_task_datasets(cfg: DataConfig, seed: int = 0) -> dict[str, ReconDataset | SRDataset]:
    """Super-resolution data sets when `cfg.superres` is set, reconstruction ones otherwise."""
    check_augment(cfg)
    if cfg.superres is not None:
        return dict(make_sr_datasets(cfg, seed))
    return dict(make_datasets(cfg, seed))


def without_targets(data: dict[str, Dataset]) -> ReconDataset:
    """Every training slice (labelled and undersampled-only) as one training set whose samples
    carry no target: what self-supervised training and distillation without targets see."""
    base, extra = data["train"], data.get("unlabeled")
    if isinstance(base, SliceDataset):
        records = list(base.records) + (list(extra.records) if isinstance(extra, SliceDataset) else [])
        return SliceDataset(records, base.cfg, "train", base.seed, with_target=False)
    if isinstance(base, FastMRISliceDataset):
        items = base.items()
        if isinstance(extra, FastMRISliceDataset):
            if extra.volumes is not base.volumes:
                raise MrdistillError("the labelled and undersampled-only training sets must come "
                                     "from the same files")
            items += extra.items()
        return FastMRISliceDataset(base.volumes, base.cfg, "train", base.seed, with_target=False,
                                   items=items)
    raise MrdistillError(f"training without targets is not available for {type(base).__name__} "
                         f"data (reconstruction data only)")
