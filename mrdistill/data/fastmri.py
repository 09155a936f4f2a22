"""A slice data set over fastMRI HDF5 files (also the reader of `mrdistill prepare` folders).

Each item reads ONE slice from its file (h5py hyperslab read; a volume is never loaded whole), so
memory does not grow with the number or size of the files; the per-file metadata comes from the
cached folder index (`fastmri_index`).

What a slice becomes (`Sample`):
- Files with full k-space (train/val): the mask is drawn here from `DataConfig.mask` (fastMRI's
  `random`/`equispaced_fraction` kinds via `physics.masks.make_mask`); validation and test masks
  are seeded from the file name exactly as fastMRI's data transforms seed them (`fastmri_seed`:
  the file name's characters), so every slice of a volume shares one mask, that mask is fastMRI's
  own for the file, and validation numbers are comparable with fastMRI's; training masks per slice (fresh every epoch with `mask.fresh_train_masks`). Columns outside the
  ismrmrd phase-encode limits (zero padding) are never marked as sampled.
- Files with a stored `mask` (fastMRI test files) are used as acquired.
- Target: `reconstruction_esc` (single-coil) or `reconstruction_rss` (multi-coil), typically a
  320x320 crop; models reconstruct the full k-space grid and the scored magnitude is centre-cropped
  to the target size (`task_loss`, `reconstruct`). Data range: the file's `max` attribute.
- Multi-coil: `coil_mode="combine"` gives one virtual coil, the k-space of the sensitivity-weighted
  combination sum_c conj(S_c) x_c (with full k-space this is exact; with a stored undersampled
  acquisition it is an approximation); `coil_mode="multi"` keeps all coils and adds the estimated
  sensitivities as `Sample.smaps` (see `coils.estimate_smaps`).
- `normalize`: k-space and target are divided by the volume scale (the `max` attribute, else the
  largest cropped magnitude of the middle slice), so targets lie in [0, 1]; `volume_scale` gives it
  back to writers of predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mrdistill.config import DataConfig
from mrdistill.data.coils import calibration_region, combine_coils, estimate_smaps, rss
from mrdistill.data.crop import center_crop, clamp_crop_size
from mrdistill.data.fastmri_index import index_folder
from mrdistill.data.fastmri_io import TARGET_KEYS, VolumeInfo, open_h5
from mrdistill.data.prepared import read_manifest
from mrdistill.data.sample import Sample
from mrdistill.data.splits import SPLITS, evenly_subsample, split_labeled
from mrdistill.errors import MrdistillError, check_choice, describe_exception
from mrdistill.physics.fft import fft2c, ifft2c, image_to_network
from mrdistill.physics.masks import MaskSeed, fastmri_seed, make_mask, stable_seed

COIL_MODES = ("combine", "multi")
_ESPIRIT_KEPT = 256  # ESPIRiT maps kept per data set (13 coils x 224^2: 5 MB each)


def target_key(info: VolumeInfo, challenge: str | None) -> str | None:
    """The target dataset of a file: by challenge, or by its coil count when `challenge` is None.

    Raises `MrdistillError` when the k-space does not fit the challenge (e.g. multi-coil k-space
    in a single-coil folder). None when the file has no such target (test files).
    """
    kind = "multicoil" if info.coils else "singlecoil"
    if challenge is not None and challenge != kind:
        raise MrdistillError(f"{info.path}: holds {kind} k-space but the challenge is {challenge}")
    key = TARGET_KEYS[kind]
    return key if key in info.targets else None


class FastMRISliceDataset(Dataset):
    """Slices of fastMRI files -> `Sample`s (see the module docstring for the conventions).

    volumes: the files (from `index_folder`); cfg: `mode` ("complex"; "real" only for real-valued
    prepared data), `mask` and `fastmri` (coil_mode, normalize); split: "train" draws training
    masks; challenge: None picks targets by each file's coil count; items: (volume index, slice)
    pairs to use (default: every slice); with_target=False hides targets (self-supervised).
    """

    def __init__(self, volumes: list[VolumeInfo], cfg: DataConfig, split: str, seed: int = 0,
                 with_target: bool = True, challenge: str | None = None,
                 items: list[tuple[int, int]] | None = None) -> None:
        check_choice("split", split, SPLITS)
        check_choice("data mode", cfg.mode, ("real", "complex"))
        check_choice("fastmri.coil_mode", cfg.fastmri.coil_mode, COIL_MODES)
        self.volumes, self.cfg, self.split, self.seed = volumes, cfg, split, seed
        self.with_target = with_target
        self.keys = [target_key(v, challenge) for v in volumes]
        if items is None:
            items = [(v, s) for v, info in enumerate(volumes) for s in range(info.num_slices)]
        # Two small integer arrays: the index costs 8 bytes per slice, whatever the files hold.
        self.vol_ids = np.asarray([v for v, _ in items], dtype=np.int32)
        self.slice_ids = np.asarray([s for _, s in items], dtype=np.int32)
        self.epoch = 0
        self._scales: dict[int, float] = {}
        self._espirit: dict[tuple[int, int, str], torch.Tensor] = {}

    def __len__(self) -> int:
        return int(self.vol_ids.shape[0])

    def items(self) -> list[tuple[int, int]]:
        """The (volume index, slice) pairs of this data set, in order."""
        return list(zip(self.vol_ids.tolist(), self.slice_ids.tolist()))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's fresh training masks (no effect on fixed masks)."""
        self.epoch = epoch

    def groups(self) -> list[list[int]]:
        """Item indices whose slices share a k-space shape (fastMRI widths vary between volumes):
        the training loop draws each batch within one group, so batches can always be stacked."""
        out: dict[tuple[int, int, int, bool], list[int]] = {}
        for i, v in enumerate(self.vol_ids.tolist()):
            info = self.volumes[v]
            has_target = self.with_target and self.keys[v] is not None
            out.setdefault((info.coils, info.height, info.width, has_target), []).append(i)
        return list(out.values())

    # ------------------------------------------------------------ per-volume quantities

    def volume_scale(self, v: int) -> float:
        """The factor k-space and targets of volume `v` are divided by (1 without `normalize`)."""
        if not self.cfg.fastmri.normalize:
            return 1.0
        if v not in self._scales:
            peak = float(self.volumes[v].attrs.get("max", 0.0) or 0.0)
            self._scales[v] = peak if peak > 0 else self._middle_slice_peak(v)
        return self._scales[v]

    def _middle_slice_peak(self, v: int) -> float:
        """Largest magnitude (RSS over coils) of the middle slice as stored, cropped to the recon
        size: a scale for files without a `max` attribute (test files)."""
        info = self.volumes[v]
        k = self.read_slice(info, info.num_slices // 2)[0]
        image = rss(ifft2c(k), dim=-3)
        size = clamp_crop_size(info.encoding.recon_size, (info.height, info.width))
        peak = float(center_crop(image, size).max())
        return peak if peak > 0 else 1.0

    def max_value(self, v: int) -> float:
        """The data range of volume `v` in the units of its samples (0 when unknown)."""
        peak = float(self.volumes[v].attrs.get("max", 0.0) or 0.0)
        return peak / self.volume_scale(v)

    def crop_size(self, v: int) -> tuple[int, int]:
        """The size predictions of volume `v` are written at: its target's, else the recon size."""
        info = self.volumes[v]
        key = self.keys[v]
        size = info.targets[key] if key is not None else info.encoding.recon_size
        return clamp_crop_size(size, (info.height, info.width))

    # ------------------------------------------------------------ reading

    def read_slice(self, info: VolumeInfo, s: int, key: str | None = None
              ) -> tuple[torch.Tensor, np.ndarray | None, np.ndarray | None]:
        """(k-space complex64 (C, H, W), stored mask (W,) or None, target (h, w) or None)."""
        with open_h5(info.path) as f:
            try:
                k = np.asarray(f["kspace"][s])
                stored = np.asarray(f["mask"][()], dtype=np.float32) if info.has_mask else None
                target = np.asarray(f[key][s], dtype=np.float32) if key is not None else None
            except Exception as exc:  # noqa: BLE001 - HDF5 raises many types on damaged files
                raise MrdistillError(f"{info.path}: cannot read slice {s} "
                                     f"({describe_exception(exc)})") from None
        # numpy's check on the float view is ~8x faster than torch's on a 15-coil slice
        values = k.view(k.real.dtype) if np.iscomplexobj(k) else k
        if not np.isfinite(values).all():
            raise MrdistillError(f"{info.path}: k-space slice {s} contains NaN or Inf values")
        if not values.any():  # measured k-space always holds noise: zeros mean a broken file
            raise MrdistillError(f"{info.path}: k-space slice {s} is all zero (no signal)")
        if target is not None and not np.isfinite(target).all():
            raise MrdistillError(f"{info.path}: target slice {s} contains NaN or Inf values")
        if stored is not None and not (np.isfinite(stored).all() and stored.any()):
            raise MrdistillError(f"{info.path}: its stored 'mask' samples no column (or holds NaN)")
        kspace = torch.from_numpy(k).to(torch.complex64)
        return (kspace[None] if kspace.ndim == 2 else kspace), stored, target

    def _mask(self, info: VolumeInfo, s: int, stored: np.ndarray | None) -> torch.Tensor:
        """float32 (1, 1, W) or (1, H, W): the stored mask, or a drawn one without the padding."""
        if stored is not None:
            return torch.from_numpy(stored.astype(np.float32)).reshape(1, 1, info.width)
        m = self.cfg.mask
        seed: MaskSeed
        if self.split == "train":
            key = f"{info.name}:{s}" + (f":{self.epoch}" if m.fresh_train_masks else "")
            seed = (stable_seed(key) + self.seed) % 2**32
        else:  # fastMRI's seed: the file name with its extension
            seed = fastmri_seed(Path(info.path).name)
        mask = make_mask(m.kind, (info.height, info.width), m.acceleration, seed=seed,
                         center_fraction=m.center_fraction, center_lines=m.center_lines, path=m.path)
        left = min(max(info.encoding.padding_left, 0), info.width)
        right = min(max(info.encoding.padding_right, left), info.width)
        if right > left and (left, right) != (0, info.width):
            # Zero-padded phase-encode columns hold no data: never count them as sampled.
            mask = mask.clone()
            mask[..., :left] = 0
            mask[..., right:] = 0
        return mask

    def _smaps(self, v: int, s: int, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`estimate_smaps` by `data.coil_maps`; ESPIRiT maps (seconds per slice) are kept per
        (volume, slice, calibration region), the ratio maps (milliseconds) are not."""
        method = self.cfg.coil_maps
        if method != "espirit":
            return estimate_smaps(kspace, mask, method)
        key = (v, s, str(calibration_region(mask)))
        if key not in self._espirit:
            if len(self._espirit) >= _ESPIRIT_KEPT:
                self._espirit.pop(next(iter(self._espirit)))
            self._espirit[key] = estimate_smaps(kspace, mask, method)
        return self._espirit[key]

    def __getitem__(self, i: int) -> Sample:
        v, s = int(self.vol_ids[i]), int(self.slice_ids[i])
        info = self.volumes[v]
        key = self.keys[v] if self.with_target else None
        kspace, stored, target = self.read_slice(info, s, key)
        scale = self.volume_scale(v)
        kspace = kspace / scale
        mask = self._mask(info, s, stored)
        smaps = None
        if info.coils:
            try:
                smaps = self._smaps(v, s, kspace, mask)
            except MrdistillError as exc:
                raise MrdistillError(f"{info.path}: {exc}") from None
            if self.cfg.fastmri.coil_mode == "combine":
                kspace, smaps = fft2c(combine_coils(ifft2c(kspace), smaps)), None
        kspace = kspace * mask + 0.0
        zero_filled = image_to_network(ifft2c(kspace)[None], self.cfg.mode == "complex")[0]
        if not (torch.isfinite(zero_filled).all() and torch.isfinite(kspace).all()):
            raise MrdistillError(f"{info.path}: k-space slice {s} overflows float32 when "
                                 f"processed (values far outside any MRI scale: a damaged file?)")
        tgt = None if target is None else torch.from_numpy(target / scale)[None]
        return Sample(kspace, mask, zero_filled, tgt, torch.tensor(self.max_value(v), dtype=torch.float32),
                      info.name, s, smaps)


# ---------------------------------------------------------------- building the splits


def _every_nth(items: list, fraction: float) -> list:
    """An evenly spaced subset holding `fraction` of the items (at least one)."""
    if not 0 < fraction <= 1:
        raise MrdistillError(f"fastmri.volume_fraction must lie in (0, 1], got {fraction}")
    n = max(1, round(len(items) * fraction))
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _limit(volumes: list[VolumeInfo], limit: int | None) -> list[tuple[int, int]]:
    """Every (volume, slice) pair, or `limit` of them evenly spaced."""
    return evenly_subsample([(v, s) for v, info in enumerate(volumes) for s in range(info.num_slices)],
                            limit)


def file_splits(cfg: DataConfig) -> tuple[dict[str, list[VolumeInfo]], str]:
    """The volumes of each split and the challenge, for `data.dataset` "fastmri" or "prepared"."""
    if not cfg.path:
        raise MrdistillError(f"data.dataset {cfg.dataset!r} needs data.path (a folder)")
    root, fm = Path(cfg.path), cfg.fastmri
    cache = fm.cache_dir

    def index(folder: Path) -> list[VolumeInfo]:
        found = index_folder(folder, cache, skip_bad=fm.skip_bad, time_limit=fm.metadata_time_limit)
        return _every_nth(found.volumes, fm.volume_fraction)

    if cfg.dataset == "prepared":
        manifest = read_manifest(root)
        if manifest["mode"] == "complex" and cfg.mode == "real":
            raise MrdistillError(f"{root} holds complex k-space (prepared with --mode complex): "
                                 f"set data.mode: complex")
        challenge = "multicoil" if manifest["coils"] > 1 else "singlecoil"
        return {s: index(root / s) for s in SPLITS}, challenge
    check_choice("fastmri.challenge", fm.challenge, tuple(TARGET_KEYS))
    if cfg.mode != "complex":
        raise MrdistillError("fastMRI k-space is complex: set data.mode: complex "
                             "(and a model with complex input, e.g. dccnn in_channels: 2)")

    def folder(spec: str) -> Path:
        p = Path(spec.format(challenge=fm.challenge))
        return p if p.is_absolute() else root / p

    out = {"train": index(folder(fm.train)), "val": index(folder(fm.val))}
    if fm.test is not None:
        out["test"] = index(folder(fm.test))
    else:  # half of the validation volumes become the test set, alternating in name order
        vols = out["val"]
        if len(vols) < 2:
            raise MrdistillError(f"{folder(fm.val)}: needs at least 2 volumes to split into val and "
                                 f"test (or set data.fastmri.test)")
        out["val"], out["test"] = vols[0::2], vols[1::2]
    return out, fm.challenge


def make_file_datasets(cfg: DataConfig, seed: int = 0) -> dict[str, FastMRISliceDataset]:
    """train/val/test (and "unlabeled" with `labeled_train_slices`) data sets over HDF5 folders."""
    check_choice("data.dataset", cfg.dataset, ("fastmri", "prepared"))
    vols, challenge = file_splits(cfg)
    limits = {"train": cfg.max_train_slices, "val": cfg.max_eval_slices, "test": cfg.max_eval_slices}
    out = {s: FastMRISliceDataset(vols[s], cfg, s, seed, challenge=challenge,
                                  items=_limit(vols[s], limits[s])) for s in SPLITS}
    labeled, rest = split_labeled(_limit(vols["train"], cfg.max_train_slices), cfg.labeled_train_slices)
    if rest:
        out["train"] = FastMRISliceDataset(vols["train"], cfg, "train", seed, challenge=challenge,
                                           items=labeled)
        out["unlabeled"] = FastMRISliceDataset(vols["train"], cfg, "train", seed, with_target=False,
                                               challenge=challenge, items=rest)
    return out
