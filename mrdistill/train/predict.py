"""`predict`: reconstruct fastMRI files or image volumes with a checkpoint and write the results.

fastMRI HDF5 in -> `<out>/<file name>.h5` with dataset `reconstruction` float32 (slices, H, W) at
the target size (else the header's recon size), in the file's own units: the layout fastMRI's
evaluation script reads. Files with a stored mask are used as acquired; fully sampled files are
undersampled with `PredictConfig.mask`, seeded from the file name like validation masks. By default
that is the mask the checkpoint's model was trained with (the checkpoint records its data config;
a foreign model's weights record none: the fallback mask, with a note);
a different mask is noted in the result, and `predict.json` records the mask used and its source.

Image volumes (NIfTI, DICOM, PNG/JPG, NPY) are fully sampled magnitude images: each volume is
divided by its max, k-space is simulated (real, or complex for complex-input models), undersampled
with the seeded mask and reconstructed; the result is scaled back and written in the input's format
family (`data.volume_io.write_like`). Super-resolution checkpoints (`input_kind == "lowres"`)
upsample the images instead (`models.upsampling.upsample`).

`PredictConfig.zero_filled` writes the zero-filled baseline instead: the same files, masks and
scaling as the model's predictions, so the two can be scored side by side (`evaluate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mrdistill.atomic import remove_stale_temporaries
from mrdistill.config import DataConfig, FastMRIConfig, MaskConfig, PredictConfig, TeacherConfig
from mrdistill.data.coils import rss
from mrdistill.data.crop import center_crop
from mrdistill.data.datasets import SliceDataset, SliceRecord
from mrdistill.data.fastmri import COIL_MODES, FastMRISliceDataset
from mrdistill.data.fastmri_io import inspect_file_limited, write_reconstruction
from mrdistill.data.volume_io import output_path, write_like
from mrdistill.data.volumes import InputItem, find_inputs, read_volume
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.contract import declared
from mrdistill.models.upsampling import upsample
from mrdistill.physics.fft import ifft2c
from mrdistill.rundir import open_output
from mrdistill.train.checkpoint import load_checkpoint, model_from_checkpoint, recorded_data
from mrdistill.train.inference import FastPaths, reconstruct
from mrdistill.train.predict_record import PredictRecord, run_identity, unfinished_record
from mrdistill.train.teachers import load_foreign_teacher


@dataclass
class PredictResult:
    """What was written, the inputs left out as (path, problem), the settings used (`cfg`, with the
    checkpoint's mask, coil mode and scaling filled in), where the mask came from ("checkpoint",
    "given" or "fallback") and notes for the user (e.g. a mask that differs from the training one)."""

    out: Path
    written: list[Path] = field(default_factory=list)
    resumed: list[Path] = field(default_factory=list)  # complete from an earlier, killed run
    bad: list[tuple[str, str]] = field(default_factory=list)
    cfg: PredictConfig | None = None
    mask_source: str = ""
    notes: list[str] = field(default_factory=list)


# The MaskConfig fields that change the drawn masks (fresh_train_masks only matters in training).
_MASK_KEYS = ("kind", "acceleration", "center_fraction", "center_lines", "path")


def describe_mask(mask: MaskConfig) -> str:
    """One phrase for messages, e.g. "kdmri 4x" or "random 8x, center_fraction 0.04"."""
    extra = [f"{k} {getattr(mask, k)}" for k in ("center_fraction", "center_lines", "path")
             if getattr(mask, k) is not None]
    return ", ".join([f"{mask.kind} {mask.acceleration:g}x", *extra])


def resolve_settings(cfg: PredictConfig, recorded: DataConfig | None,
                     checkpoint: str | Path) -> tuple[PredictConfig, str, list[str]]:
    """`cfg` with every None filled from the training data config `recorded` (else the defaults)
    -> (settings, mask source, notes). A given mask that differs from the training one, and a
    checkpoint without a record, each get a note: predict never changes the mask silently."""
    trained = recorded.fastmri if recorded is not None else FastMRIConfig()
    notes: list[str] = []
    if cfg.mask is None and recorded is not None:
        mask, source = recorded.mask, "checkpoint"
    elif cfg.mask is None:
        mask, source = cfg.fallback_mask, "fallback"
        notes.append(f"{checkpoint} records no training mask (foreign weights, or written before "
                     f"mrdistill recorded it); "
                     f"using {describe_mask(mask)}; pass --mask to choose")
    else:
        mask, source = cfg.mask, "given"
        if recorded is not None and _differs(mask, recorded.mask):
            notes.append(f"mask {describe_mask(mask)} given; the model was trained with "
                         f"{describe_mask(recorded.mask)}")
    coil_mode = training_coil_mode(recorded) if cfg.coil_mode is None else cfg.coil_mode
    normalize = trained.normalize if cfg.normalize is None else cfg.normalize
    return replace(cfg, mask=mask, coil_mode=coil_mode, normalize=normalize), source, notes


def training_coil_mode(recorded: DataConfig | None) -> str:
    """How multi-coil files meet the model by default: as it was trained. A model trained on the
    embedded corpus with simulated coils (`data.coils` > 1) saw them apart ("multi"); otherwise the
    recorded `fastmri.coil_mode` (the default without a record)."""
    if recorded is not None and recorded.dataset == "embedded" and recorded.coils > 1:
        return "multi"
    return (recorded.fastmri if recorded is not None else FastMRIConfig()).coil_mode


def _differs(a: MaskConfig, b: MaskConfig) -> bool:
    return any(getattr(a, k) != getattr(b, k) for k in _MASK_KEYS)


def training_mask(checkpoint: str | Path | TeacherConfig, cfg: PredictConfig | None = None) -> MaskConfig:
    """The mask `predict` uses by default for `checkpoint` (its training mask, else the fallback):
    the base that command-line options such as `--acceleration` alone modify."""
    recorded = _recorded(checkpoint)
    return recorded.mask if recorded is not None else (cfg or PredictConfig()).fallback_mask


def _weights_path(model: str | Path | TeacherConfig) -> str | Path:
    return model.weights if isinstance(model, TeacherConfig) else model


def _recorded(model: str | Path | TeacherConfig) -> DataConfig | None:
    """The training data config an mrdistill checkpoint records (None for foreign weights)."""
    if isinstance(model, TeacherConfig) and model.format != "mrdistill":
        return None
    path = _weights_path(model)
    return recorded_data(load_checkpoint(path), path)


def load_predictor(model: str | Path | TeacherConfig,
                   device: str | torch.device) -> tuple[nn.Module, DataConfig | None]:
    """(the model, the training data config its checkpoint records or None) of a checkpoint path,
    or of a foreign model described as `distill.teacher` describes one
    (`train.teachers.load_foreign_teacher`; its arguments are set with `--set`)."""
    if isinstance(model, TeacherConfig):
        return load_foreign_teacher(model, device, kwargs_key="--set"), _recorded(model)
    ckpt = load_checkpoint(model)
    return model_from_checkpoint(ckpt, model, device), recorded_data(ckpt, model)


def _is_lowres(model: nn.Module) -> bool:
    return declared(model).input_kind == "lowres"


def _mode(model: nn.Module) -> str:
    """"real" for real-image models (KD-MRI's 1-channel DC-CNN), else "complex": the model's
    declared `complex_input` (`models.contract`)."""
    return "complex" if declared(model).complex_input else "real"


def predict_fastmri(model: nn.Module, path: Path, cfg: PredictConfig,
                    fast_paths: FastPaths | None = None) -> np.ndarray:
    """Reconstruction float32 (S, h, w) of one fastMRI file, in the file's units (fast_paths: as
    `reconstruct`'s, shared over the files of one run)."""
    info = inspect_file_limited(path)
    data_cfg = DataConfig(mode=_mode(model), mask=cfg.mask,
                          fastmri=FastMRIConfig(coil_mode=cfg.coil_mode, normalize=cfg.normalize))
    ds = FastMRISliceDataset([info], data_cfg, "test", challenge=None)
    size = ds.crop_size(0)
    if _is_lowres(model):  # the magnitude of the stored k-space, super-resolved
        slices = [center_crop(rss(ifft2c(ds.read_slice(info, s)[0]), dim=-3), size).numpy()
                  for s in range(info.num_slices)]
        return upsample(model, np.stack(slices)).astype(np.float32)
    recons, _ = reconstruct(None if cfg.zero_filled else model, ds, cfg.device, cfg.batch_size,
                            fast=cfg.fast, fast_paths=fast_paths)
    pred = recons[info.name].prediction
    if tuple(pred.shape[-2:]) != size:
        pred = center_crop(pred, size)
    return (pred.numpy() * ds.volume_scale(0)).astype(np.float32)


def predict_image_volume(model: nn.Module, item: InputItem, cfg: PredictConfig,
                         fast_paths: FastPaths | None = None) -> tuple[Any, np.ndarray]:
    """(the `ImageVolume` read, its reconstruction float32 (S, H, W) in the input's units)."""
    vol = read_volume(item, cfg.slice_axis)
    if _is_lowres(model):
        return vol, upsample(model, vol.data).astype(np.float32)
    peak = float(vol.data.max())
    records = [SliceRecord(item.name, i, vol.data[i] / peak) for i in range(vol.data.shape[0])]
    ds = SliceDataset(records, DataConfig(mode=_mode(model), mask=cfg.mask), "test")
    recons, _ = reconstruct(None if cfg.zero_filled else model, ds, cfg.device, cfg.batch_size,
                            fast=cfg.fast, fast_paths=fast_paths)
    return vol, (recons[item.name].prediction.numpy() * peak).astype(np.float32)


def predict(model_spec: str | Path | TeacherConfig, inputs: list[str | Path], out: str | Path,
            cfg: PredictConfig | None = None, *, skip_bad: bool = False, overwrite: bool = False,
            progress: bool = True) -> PredictResult:
    """Reconstruct every volume found in `inputs` (files or folders) into `out` with a checkpoint
    (a path) or a foreign model (`TeacherConfig`).

    A bad input raises `MrdistillError` naming it, or with `skip_bad` is listed in
    `PredictResult.bad` while the rest is processed. A run that writes nothing is an error.
    """
    checkpoint, cfg = _weights_path(model_spec), cfg or PredictConfig()
    model, recorded = load_predictor(model_spec, cfg.device)  # checked before anything is written
    cfg, source, notes = resolve_settings(cfg, recorded, checkpoint)
    check_choice("coil mode", cfg.coil_mode, COIL_MODES)
    if cfg.batch_size < 1:
        raise MrdistillError(f"batch size must be at least 1, got {cfg.batch_size}")
    if cfg.zero_filled and _is_lowres(model):
        raise MrdistillError(f"{checkpoint} holds a super-resolution model: --zero-filled is the "
                             f"baseline of k-space reconstruction models")
    result = PredictResult(Path(out), cfg=cfg, mask_source=source, notes=notes)
    items: list[InputItem] = []
    for p in inputs:
        try:
            items += find_inputs(p)
        except MrdistillError as exc:
            if not skip_bad:
                raise
            result.bad.append((str(p), str(exc)))
    settings = asdict(cfg) | ({"model": asdict(model_spec)} if isinstance(model_spec, TeacherConfig) else {})
    identity = run_identity(checkpoint, settings, [str(p) for p in inputs], torch.__version__)
    record = None if overwrite else unfinished_record(result.out, identity)
    if record is None:  # a new run (an unfinished one of the same predict is continued instead)
        # Everything is checked and loaded: a predictions folder this replaces is removed now.
        open_output(result.out, overwrite=overwrite, inputs=[*inputs, checkpoint],
                    command="predict").commit()
        record = PredictRecord(result.out, identity)
        record.begin()
    record.details = {"mask_source": source, "notes": notes}
    remove_stale_temporaries(result.out)  # what killed writes left behind
    names: dict[str, int] = {}
    fast_paths: FastPaths = {}  # one fast module per slice shape for the whole run
    for item in tqdm(items, desc="predict", disable=not progress):
        names[item.name] = names.get(item.name, 0) + 1
        name = item.name if names[item.name] == 1 else f"{item.name}-{names[item.name]}"
        # fastMRI: the input's own file name, which is what fastMRI's evaluation looks up
        target = (result.out / (item.path.name if name == item.name else f"{name}.h5")
                  if item.kind == "fastmri" else output_path(item.kind, name, result.out))
        if record.is_complete(target):
            result.written.append(target)
            result.resumed.append(target)
            continue
        try:
            if item.kind == "fastmri":
                recon = predict_fastmri(model, item.path, cfg, fast_paths)
                write_reconstruction(target, recon, {"checkpoint": str(checkpoint), "source": str(item.path)})
            else:
                vol, recon = predict_image_volume(model, item, cfg, fast_paths)
                vol.name = name
                write_like(vol, recon, result.out)
        except MrdistillError as exc:
            if not skip_bad:
                raise
            result.bad.append((str(item.path), str(exc)))
            continue
        record.mark_complete(target, item.path)
        result.written.append(target)
    if not result.written:
        first = result.bad[0][1] if result.bad else "no inputs"
        raise MrdistillError(f"nothing was written: none of the inputs could be read (first problem: {first})")
    record.finish(result.bad)
    return result
