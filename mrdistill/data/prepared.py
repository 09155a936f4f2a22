"""The slice data set `mrdistill prepare` writes: image volumes -> simulated k-space in fastMRI files.

Layout of a prepared folder:
    prepare.json                 how it was made (format "mrdistill.prepared/1"): inputs, options,
                                 versions, time, which slices went where, skipped inputs
    train/ val/ test/ *.h5       fastMRI-layout files: full `kspace`, `reconstruction_esc`
                                 (single-coil) or `reconstruction_rss` (multi-coil), an ismrmrd
                                 header (no padding), attributes `max`, `norm`, `acquisition`,
                                 `patient_id`
so everything that reads fastMRI reads it (`data.dataset: prepared`, `predict`, `evaluate`).

Per volume: intensities divided by the volume max (targets in [0, 1]); optional square resize;
slices with too little foreground dropped; then per slice x (float, H x W): complex mode
multiplies a smooth random phase (`simulate.smooth_phase`), coils > 1 multiply simulated coil maps
S_c (`coils.simulate_coil_maps`, sum_c |S_c|^2 = 1), k_c = fft2c(S_c x) plus complex Gaussian noise.
Targets are the noise-free magnitudes |x| (= RSS of the noise-free coil images). Masks are not
stored: the data set draws them from `DataConfig.mask` when it is read.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mrdistill.atomic import atomic_write_text
from mrdistill.config import PrepareConfig
from mrdistill.data.coils import simulate_coil_maps
from mrdistill.data.splits import assign_slabs
from mrdistill.data.fastmri_io import write_fastmri_file
from mrdistill.data.simulate import foreground_fraction, smooth_phase, square_resize
from mrdistill.data.volumes import InputItem, read_volume
from mrdistill.errors import MrdistillError, check_choice, describe_exception
from mrdistill.physics.fft import fft2c
from mrdistill.physics.masks import stable_seed
from mrdistill.rundir import claim

MANIFEST = "prepare.json"
MANIFEST_FORMAT = "mrdistill.prepared/1"
SPLITS = ("train", "val", "test")


@dataclass
class PrepareResult:
    """The manifest written, and the inputs left out as (path, problem)."""

    out: Path
    manifest: dict[str, Any]
    bad: list[tuple[str, str]] = field(default_factory=list)


def check_prepare_config(cfg: PrepareConfig) -> None:
    """Validate the options before any file is read (clear one-line errors)."""
    check_choice("prepare mode", cfg.mode, ("real", "complex"))
    check_choice("split_by", cfg.split_by, ("slab", "volume"))
    if cfg.coils < 1:
        raise MrdistillError(f"coils must be at least 1, got {cfg.coils}")
    if cfg.coils > 1 and cfg.mode != "complex":
        raise MrdistillError("coil maps are complex: --coils > 1 needs --mode complex")
    if cfg.noise_std < 0 or not np.isfinite(cfg.noise_std):
        raise MrdistillError(f"noise_std must be a finite number >= 0, got {cfg.noise_std}")
    if cfg.size is not None and cfg.size < 8:
        raise MrdistillError(f"size must be at least 8, got {cfg.size}")
    if cfg.slab < 1:
        raise MrdistillError(f"slab must be at least 1, got {cfg.slab}")
    assign_slabs(1, cfg.split_fractions)  # validates the fractions


def simulate_slices(images: np.ndarray, cfg: PrepareConfig, volume: str, indices: list[int]) -> np.ndarray:
    """float32 (n, H, W) images in [0, 1] -> full centred k-space complex64 (n, H, W) for one coil
    or (n, C, H, W); phase and noise seeded by (volume, slice index, cfg.seed)."""
    h, w = images.shape[-2:]
    maps = simulate_coil_maps(cfg.coils, (h, w)) if cfg.coils > 1 else None
    out = []
    for image, idx in zip(images, indices):
        seed = (stable_seed(f"{volume}:{idx}") + cfg.seed) % 2**32
        x = torch.from_numpy(image).to(torch.complex64)
        if cfg.mode == "complex":
            x = x * torch.polar(torch.ones(h, w), smooth_phase((h, w), seed))
        coil_images = x[None] if maps is None else maps * x
        k = fft2c(coil_images)
        if cfg.noise_std > 0:
            gen = torch.Generator().manual_seed((seed + 1) % 2**63)
            noise = torch.randn((2, *k.shape), generator=gen) * cfg.noise_std
            k = k + torch.complex(noise[0], noise[1])
        out.append(k[0] if maps is None else k)
    return torch.stack(out).numpy()


def _units(name: str, kept: list[int], cfg: PrepareConfig) -> list[tuple[str, list[int]]]:
    """(file name, original slice indices) of each unit a volume is cut into."""
    if cfg.split_by == "volume":
        return [(name, kept)]
    slabs: dict[int, list[int]] = {}
    for i in kept:
        slabs.setdefault(i // cfg.slab, []).append(i)
    return [(f"{name}-slab{k:03d}", idx) for k, idx in sorted(slabs.items())]


def _volume_images(item: InputItem, cfg: PrepareConfig) -> tuple[np.ndarray, list[int]]:
    """Normalised (optionally resized) slices float32 (S, H, W) and the indices kept."""
    vol = read_volume(item, cfg.slice_axis)
    data = vol.data / float(vol.data.max())
    if cfg.size is not None:
        data = np.stack([square_resize(s, cfg.size) for s in data])
    kept = [i for i in range(data.shape[0]) if foreground_fraction(data[i]) >= cfg.min_foreground]
    if not kept:
        raise MrdistillError(f"{item.path}: no slice has a foreground fraction of at least "
                             f"{cfg.min_foreground} (lower --min-foreground)")
    return data.astype(np.float32), kept


def prepare_volumes(items: list[InputItem], out: str | Path, cfg: PrepareConfig, *,
                    skip_bad: bool = False, overwrite: bool = False, progress: bool = True,
                    command: str | None = None) -> PrepareResult:
    """Turn image volumes into a prepared slice data set in `out` (see the module docstring).

    A bad input raises `MrdistillError` naming it, or with `skip_bad` is listed and left out.
    """
    check_prepare_config(cfg)
    if not items:
        raise MrdistillError("no input volumes given")
    for it in items:
        if it.kind == "fastmri":
            raise MrdistillError(f"{it.path}: already holds k-space (fastMRI HDF5); read it with "
                                 f"data.dataset: fastmri instead of preparing it")
    out = Path(out)
    # Written into a fresh folder; an old data set it replaces is removed only once this one is
    # complete, and comes back if anything fails.
    with claim(out, overwrite=overwrite, inputs=[it.path for it in items], command="prepare"):
        return _write_dataset(items, out, cfg, skip_bad, progress, command)


def _write_dataset(items: list[InputItem], out: Path, cfg: PrepareConfig, skip_bad: bool,
                   progress: bool, command: str | None) -> PrepareResult:
    volume_splits = assign_slabs(len(items), cfg.split_fractions) if cfg.split_by == "volume" else []
    files: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    inputs, bad = [], []
    for k, item in enumerate(tqdm(items, desc="prepare", disable=not progress)):
        try:
            images, kept = _volume_images(item, cfg)
        except MrdistillError as exc:
            if not skip_bad:
                raise
            bad.append((str(item.path), str(exc)))
            continue
        inputs.append({"name": item.name, "kind": item.kind, "path": str(item.path),
                       "files": len(item.files) or 1, "slices": int(images.shape[0]),
                       "slices_kept": len(kept), "in_plane": list(images.shape[1:])})
        units = _units(item.name, kept, cfg)
        splits = [volume_splits[k]] if volume_splits else assign_slabs(len(units), cfg.split_fractions)
        for (unit, indices), split in zip(units, splits):
            target = images[indices]
            kspace = simulate_slices(target, cfg, item.name, indices)
            write_fastmri_file(out / split / f"{unit}.h5", kspace, target=target,
                               attrs={"acquisition": f"mrdistill-prepare-{cfg.mode}",
                                      "patient_id": item.name, "source_slices": np.asarray(indices)})
            files[split].append({"file": f"{split}/{unit}.h5", "volume": item.name, "slices": indices})
    if not inputs:
        raise MrdistillError(f"none of the {len(items)} inputs could be read (first problem: {bad[0][1]})")
    for split in SPLITS:
        (out / split).mkdir(exist_ok=True)
    manifest = _manifest(cfg, inputs, files, bad, command)
    _write_json(out / MANIFEST, manifest)
    return PrepareResult(out, manifest, bad)


def _manifest(cfg: PrepareConfig, inputs: list[dict[str, Any]], files: dict[str, list[dict[str, Any]]],
              bad: list[tuple[str, str]], command: str | None) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        mrdistill_version = version("mrdistill")
    except PackageNotFoundError:
        mrdistill_version = "unknown"
    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "versions": {"mrdistill": mrdistill_version, "torch": torch.__version__, "numpy": np.__version__},
        "mode": cfg.mode,
        "coils": cfg.coils,
        "options": asdict(cfg),
        "method": ("intensities / volume max; optional square resize; slices below min_foreground "
                   "dropped; k = fft2c(coil_maps * image * phase) + complex Gaussian noise "
                   "(std per component, image max 1); targets = noise-free magnitude; masks drawn "
                   "when the data set is read"),
        "inputs": inputs,
        "skipped": [{"path": p, "problem": m} for p, m in bad],
        "splits": {s: {"files": len(v), "slices": sum(len(f["slices"]) for f in v)} for s, v in files.items()},
        "files": files,
    }


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def read_format_json(path: Path, fmt: str, missing: str) -> dict[str, Any]:
    """A JSON manifest whose "format" is `fmt`; `MrdistillError` with `missing` when there is no
    such file, or naming the file when it is unreadable or of another format."""
    if not path.is_file():
        raise MrdistillError(missing)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MrdistillError(f"{path}: unreadable ({describe_exception(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise MrdistillError(f"{path}: not a {fmt} manifest (format {found!r})")
    return doc


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The prepare.json of a prepared folder; `MrdistillError` if it is missing or foreign."""
    path = Path(root) / MANIFEST
    doc = read_format_json(path, MANIFEST_FORMAT,
                           f"{root}: no {MANIFEST} (not a folder written by `mrdistill prepare`)")
    if doc.get("mode") not in ("real", "complex"):
        raise MrdistillError(f"{path}: 'mode' must be real or complex, got {doc.get('mode')!r}")
    coils = doc.get("coils")
    if isinstance(coils, bool) or not isinstance(coils, int) or coils < 1:
        raise MrdistillError(f"{path}: 'coils' must be a whole number >= 1, got {coils!r}")
    return doc
