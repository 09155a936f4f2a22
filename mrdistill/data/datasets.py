"""Slice records, deterministic splits and the `SliceDataset` that yields `Sample`s.

Splits are by slab: each volume is cut into contiguous slabs of `DataConfig.slab` slices and whole
slabs go to train/val/test, spread over the volume, so no test slice is ever seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from mrdistill.config import DataConfig
from mrdistill.data.augment import augment_image, combined_noise_std, draw_params
from mrdistill.data.coils import calibration_region, estimate_smaps
from mrdistill.data.sample import Sample
from mrdistill.data.simulate import foreground_fraction, simulate_kspace, square_resize
from mrdistill.data.sources import HELDOUT, load_source
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.physics.fft import ifft2c, image_to_network
from mrdistill.data.splits import SPLITS, assign_slabs, evenly_subsample, split_labeled
from mrdistill.physics.masks import make_mask, stable_seed


@dataclass(frozen=True)
class SliceRecord:
    """One ground-truth slice: image float32 (H, W) normalised to max 1."""

    volume: str
    slice_index: int
    image: np.ndarray


def foreground_slices(volume: np.ndarray, min_foreground: float) -> list[int]:
    """Indices of the slices of float (S, H, W) whose foreground fraction is >= `min_foreground`."""
    return [i for i in range(volume.shape[0]) if foreground_fraction(volume[i]) >= min_foreground]


def slice_record(volume_id: str, index: int, image: np.ndarray, size: int) -> SliceRecord:
    """One slice float (H, W), squared and resized to (size, size), normalised to max 1."""
    img = square_resize(image, size)
    return SliceRecord(volume_id, index, (img / max(float(img.max()), 1e-8)).astype(np.float32))


def volume_records(name: str, volume: np.ndarray, cfg: DataConfig) -> dict[str, list[SliceRecord]]:
    """Split one volume float (S, H, W) into train/val/test records (foreground slices only)."""
    keep = foreground_slices(volume, cfg.min_foreground)
    slabs: dict[int, list[int]] = {}
    for i in keep:
        slabs.setdefault(i // cfg.slab, []).append(i)
    order = sorted(slabs)
    splits = assign_slabs(len(order), cfg.split_fractions)
    out: dict[str, list[SliceRecord]] = {s: [] for s in SPLITS}
    for slab_id, split in zip(order, splits):
        vol_id = f"{name}/slab{slab_id:03d}"
        out[split].extend(slice_record(vol_id, i, volume[i], cfg.image_size) for i in slabs[slab_id])
    return out


def build_splits(cfg: DataConfig) -> dict[str, list[SliceRecord]]:
    """The embedded corpus of `cfg.sources` as train/val/test slice records."""
    check_choice("data mode", cfg.mode, ("real", "complex"))
    if cfg.image_size < 8:
        raise MrdistillError(f"image_size must be at least 8, got {cfg.image_size}")
    out: dict[str, list[SliceRecord]] = {s: [] for s in SPLITS}
    for name in cfg.sources:
        for split, recs in volume_records(name, load_source(name), cfg).items():
            out[split].extend(recs)
    out["train"] = evenly_subsample(out["train"], cfg.max_train_slices)
    out["val"] = evenly_subsample(out["val"], cfg.max_eval_slices)
    out["test"] = evenly_subsample(out["test"], cfg.max_eval_slices)
    for split in SPLITS:
        if not out[split]:
            raise MrdistillError(f"no {split} slices: use more sources, smaller slabs or a lower "
                                 f"min_foreground")
    return out


class SliceDataset(Dataset):
    """Records -> `Sample`s with simulated, undersampled k-space.

    Validation/test masks are fixed per volume (seeded from the volume name, like fastMRI);
    training masks are fixed per slice, or fresh every epoch with `mask.fresh_train_masks`.
    With `augment.enabled`, every training slice is augmented afresh each epoch (`data.augment`:
    seeded by the run seed, the slice and the epoch) before its k-space is simulated.
    `with_target=False` gives self-supervised samples (target None). Simulated multi-coil samples
    (`data.coils` > 1) carry coil maps estimated from their calibration region by `data.coil_maps`,
    as multi-coil files do, not the simulation's own maps: a model with maps (MoDL, in_channels 2)
    trains on the maps it will get from measured data.
    """

    def __init__(self, records: list[SliceRecord], cfg: DataConfig, split: str, seed: int = 0,
                 with_target: bool = True) -> None:
        check_choice("split", split, SPLITS)
        self.records, self.cfg, self.split, self.seed = records, cfg, split, seed
        self.with_target = with_target
        self.epoch = 0
        self.max_values = self._volume_max()
        self._full: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(records)
        # Maps depend only on the calibration region of an unaugmented slice's fixed k-space, so
        # ESPIRiT (seconds per slice) runs once per slice and calibration block, not per epoch.
        self._maps: dict[tuple[int, str], torch.Tensor] = {}

    def _volume_max(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.records:
            out[r.volume] = max(out.get(r.volume, 0.0), float(r.image.max()))
        return out

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's fresh training masks (no effect on fixed masks)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _mask_seed(self, rec: SliceRecord) -> int:
        if self.split != "train":
            return stable_seed(rec.volume)
        key = f"{rec.volume}:{rec.slice_index}"
        if self.cfg.mask.fresh_train_masks:
            key += f":{self.epoch}"
        return (stable_seed(key) + self.seed) % 2**32

    def augmenting(self) -> bool:
        """Whether this data set's slices are augmented (training slices with `augment.enabled`)."""
        return self.split == "train" and self.cfg.augment.enabled

    def _augmented(self, rec: SliceRecord) -> tuple[torch.Tensor, torch.Tensor]:
        """(full k-space complex64 (C, H, W), augmented image float32 (H, W)) of this epoch."""
        key = f"{rec.volume}:{rec.slice_index}"
        params = draw_params(self.cfg.augment,
                             (stable_seed(f"{key}:augment:{self.epoch}") + self.seed) % 2**32)
        image = augment_image(torch.from_numpy(rec.image), params)
        phase_seed = params.seed if self.cfg.augment.phase else stable_seed(key)
        full_k, _ = simulate_kspace(image, self.cfg.mode, phase_seed,
                                    combined_noise_std(self.cfg.noise_std, params.noise_std),
                                    self.cfg.coils, noise_seed=params.seed + 1)
        return full_k, image

    def _full_kspace(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._full[i]
        if cached is None:
            rec = self.records[i]
            image = torch.from_numpy(rec.image)
            cached = simulate_kspace(image, self.cfg.mode, stable_seed(f"{rec.volume}:{rec.slice_index}"),
                                     self.cfg.noise_std, self.cfg.coils)
            self._full[i] = cached
        return cached

    def __getitem__(self, i: int) -> Sample:
        rec = self.records[i]
        if self.augmenting():
            full_k, image = self._augmented(rec)
            max_value = image.max()
        else:
            full_k, _ = self._full_kspace(i)
            image, max_value = torch.from_numpy(rec.image), torch.tensor(self.max_values[rec.volume])
        m = self.cfg.mask
        mask = make_mask(m.kind, tuple(full_k.shape[-2:]), m.acceleration, seed=self._mask_seed(rec),
                         center_fraction=m.center_fraction, center_lines=m.center_lines, path=m.path)
        kspace = full_k * mask + 0.0
        zf = image_to_network(ifft2c(kspace)[None], self.cfg.mode == "complex")[0]
        target = image[None] if self.with_target else None
        smaps = self._smaps(i, kspace, mask) if self.cfg.coils > 1 else None
        return Sample(kspace, mask, zf, target, max_value, rec.volume, rec.slice_index, smaps)

    def _smaps(self, i: int, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """complex64 (C, H, W) maps of slice i by `data.coil_maps`, kept per calibration region
        unless the slice is augmented afresh every epoch."""
        if self.augmenting():
            return estimate_smaps(kspace, mask, self.cfg.coil_maps)
        key = (i, str(calibration_region(mask)))
        if key not in self._maps:
            self._maps[key] = estimate_smaps(kspace, mask, self.cfg.coil_maps)
        return self._maps[key]


class MixedDataset(Dataset):
    """Labelled and undersampled-only slices in one training set whose batches never mix the two
    (a batch either has targets or has none): see `groups` and `train.loop.GroupedBatchSampler`."""

    def __init__(self, labeled: SliceDataset, unlabeled: SliceDataset) -> None:
        self.parts = (labeled, unlabeled)

    def __len__(self) -> int:
        return len(self.parts[0]) + len(self.parts[1])

    def __getitem__(self, i: int) -> Sample:
        n = len(self.parts[0])
        return self.parts[0][i] if i < n else self.parts[1][i - n]

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def groups(self) -> list[list[int]]:
        """Index groups that may share a batch: labelled, then undersampled-only."""
        n = len(self.parts[0])
        return [list(range(n)), list(range(n, len(self)))]


def check_coils(cfg: DataConfig) -> None:
    """`data.coils` simulates coils on the embedded corpus only, and coil maps need complex images."""
    if cfg.coils < 1:
        raise MrdistillError(f"data.coils must be at least 1, got {cfg.coils}")
    if cfg.coils > 1 and cfg.dataset != "embedded":
        raise MrdistillError(f"data.coils simulates coils on the embedded corpus; {cfg.dataset} data "
                             f"bring their own coils (leave data.coils at 1)")
    if cfg.coils > 1 and cfg.mode != "complex":
        raise MrdistillError("data.coils > 1 needs data.mode: complex (coil maps are complex)")


def check_augment(cfg: DataConfig) -> None:
    """`data.augment` acts on the embedded corpus' images (before k-space is simulated); a phase
    needs complex images."""
    if not cfg.augment.enabled:
        return
    if cfg.dataset != "embedded" or cfg.superres is not None:
        kind = "super-resolution" if cfg.superres is not None else f"data.dataset: {cfg.dataset}"
        raise MrdistillError(f"data.augment augments the embedded corpus' reconstruction slices "
                             f"before their k-space is simulated; it is not available for {kind} "
                             f"(set data.augment.enabled: false)")
    if cfg.augment.phase and cfg.mode != "complex":
        raise MrdistillError("data.augment.phase needs data.mode: complex (the real-image mode "
                             "feeds the network the real part, which a phase would corrupt)")


def make_embedded_datasets(cfg: DataConfig, seed: int = 0) -> dict[str, SliceDataset]:
    """train/val/test `SliceDataset`s over the embedded corpus described by `cfg`.

    With `cfg.labeled_train_slices`, "train" holds only the labelled slices and "unlabeled" the
    undersampled-only rest (target None). Data sets of every kind: `data.build.make_datasets`.
    """
    check_coils(cfg)
    check_augment(cfg)
    records = build_splits(cfg)
    out = {split: SliceDataset(records[split], cfg, split, seed) for split in SPLITS}
    labeled, rest = split_labeled(records["train"], cfg.labeled_train_slices)
    if rest:
        out["train"] = SliceDataset(labeled, cfg, "train", seed)
        out["unlabeled"] = SliceDataset(rest, cfg, "train", seed, with_target=False)
    return out


def heldout_records(cfg: DataConfig, names: tuple[str, ...] = HELDOUT) -> list[SliceRecord]:
    """The held-out real images (`sources.HELDOUT`) as test records: one volume per source (its
    name), every slice with at least `cfg.min_foreground` foreground, at `cfg.image_size`."""
    records: list[SliceRecord] = []
    for name in names:
        volume = load_source(name)
        kept = foreground_slices(volume, cfg.min_foreground)
        if not kept:
            raise MrdistillError(f"held-out source {name!r}: no slice has a foreground fraction of "
                                 f"at least data.min_foreground={cfg.min_foreground:g}")
        records.extend(slice_record(name, i, volume[i], cfg.image_size) for i in kept)
    return records


def heldout_dataset(cfg: DataConfig, seed: int = 0, names: tuple[str, ...] = HELDOUT) -> SliceDataset:
    """A test `SliceDataset` over the held-out real images: k-space simulated as for the embedded
    corpus (`cfg.mode`, `cfg.noise_std`, `cfg.coils`), one fixed mask per image seeded by its name."""
    check_coils(cfg)
    return SliceDataset(heldout_records(cfg, names), cfg, "test", seed)
