"""Scoring prediction files against fastMRI target files, the way fastMRI's `evaluate.py` does.

For every target file `T/<name>.h5` (optionally only those whose `acquisition` / `acceleration`
attributes match), the prediction `P/<name>.h5` (dataset `reconstruction`) is read; both volumes
are centre-cropped to (w, w) with w the target's width (as fastMRI does, so brain targets of other
sizes are scored on the same square); per volume: NMSE, PSNR and HFEN/VIF pooled over the volume,
SSIM the mean over slices, all with data range = max of the (cropped) target volume. The
aggregate over volumes is mean +/- 2 sd (`eval.report.summarise`). Per-slice values use the
volume's data range. `comparison_figures` shows target, predictions and error maps of a few slices
for several prediction folders scored against the same targets.

The metadata of every target and prediction file (its datasets and attributes) is read in a worker
process under a time limit (`fastmri_io.read_headers`): a damaged file can keep HDF5 busy for
minutes, and one that runs over the limit is reported as unreadable (or, with `skip_bad`, a bad
target is listed and left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mrdistill.data.crop import center_crop
from mrdistill.data.splits import evenly_subsample
from mrdistill.eval.figures import save_panel, write_figure_index
from mrdistill.data.fastmri_index import list_h5_files
from mrdistill.config import FastMRIConfig
from mrdistill.data.fastmri_io import PREDICTION_KEY, TARGET_KEYS, read_headers, read_volume_array
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.eval.metrics import METRICS, slice_metrics, volume_metrics

FILE_METRICS = ("nmse", "psnr", "ssim", "hfen", "vif")


@dataclass
class FileEvaluation:
    """per_volume: one row per scored volume (name + metrics); per_slice: one row per slice;
    scored: volume name -> (target file, target dataset); skipped: unreadable targets left out
    with `skip_bad`, as (path, problem)."""

    per_volume: list[dict[str, Any]] = field(default_factory=list)
    per_slice: list[dict[str, Any]] = field(default_factory=list)
    filtered_out: int = 0
    scored: dict[str, tuple[Path, str]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def metric_rows(self, metrics: tuple[str, ...]) -> list[dict[str, float]]:
        return [{m: float(row[m]) for m in metrics} for row in self.per_volume]


def _target_key(f: dict[str, int], path: Path, challenge: str | None) -> str:
    """The target dataset to score against (f: the file's dataset names -> rank): by challenge,
    else by the file's k-space coils."""
    if challenge is not None:
        key = TARGET_KEYS[challenge]
    elif "kspace" in f:
        key = TARGET_KEYS["multicoil" if f["kspace"] == 4 else "singlecoil"]
    else:
        present = [k for k in TARGET_KEYS.values() if k in f]
        if len(present) != 1:
            raise MrdistillError(f"{path}: cannot tell the challenge (targets: {present or 'none'}); "
                                 f"pass --challenge singlecoil or multicoil")
        key = present[0]
    if key not in f:
        raise MrdistillError(f"{path}: no '{key}' target (a test file, or the wrong --challenge?)")
    if f[key] != 3:
        raise MrdistillError(f"{path}: '{key}' must be a (slices, H, W) dataset")
    return key


def _matches(attrs: Any, name: str, wanted: Any) -> bool:
    if wanted is None:
        return True
    value = attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(wanted, float):
        try:
            return value is not None and float(value) == wanted
        except (TypeError, ValueError):
            return False
    return value == wanted


def scored_pair(tgt_file: Path, key: str, pred_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(target, prediction) float64 (S, w', w) as fastMRI scores them: the target volume `key`
    centre-cropped to (w, w) (w its width), the prediction cropped to the same size. Raises
    `MrdistillError` naming the prediction file when it is missing, misshapen or non-finite."""
    target = read_volume_array(tgt_file, key).astype(np.float64)
    if not pred_file.is_file():
        raise MrdistillError(f"{pred_file}: no prediction for target {tgt_file.name}")
    pred = read_volume_array(pred_file, PREDICTION_KEY).astype(np.float64)
    if pred.ndim != 3 or pred.shape[0] != target.shape[0]:
        raise MrdistillError(f"{pred_file}: prediction shape {pred.shape} does not match the "
                             f"target's {target.shape} (slices, H, W)")
    if not np.isfinite(pred).all():
        raise MrdistillError(f"{pred_file}: prediction contains NaN or Inf values")
    side = target.shape[-1]
    target = center_crop(target, (min(side, target.shape[-2]), side))
    try:
        pred = center_crop(pred, target.shape[-2:])
    except MrdistillError:
        raise MrdistillError(f"{pred_file}: prediction {pred.shape[-2]}x{pred.shape[-1]} is smaller "
                             f"than the scored target crop {target.shape[-2]}x{target.shape[-1]}") from None
    return target, pred


def comparison_figures(ev: FileEvaluation, predictions: dict[str, Path], out: str | Path, *,
                       volumes: int = 8) -> list[Path]:
    """PNG panels `out/<volume>_slice<k>.png` of the middle slice of every volume `ev` scored (up
    to `volumes`, evenly spread when there are more): the target, every prediction (label ->
    folder, in order) and their error maps; and `out/index.md` listing them. Returns the PNGs."""
    written, index = [], []
    for row in evenly_subsample(ev.per_volume, volumes):
        name = row["volume"]
        tgt_file, key = ev.scored[name]
        pairs = {label: scored_pair(tgt_file, key, folder / tgt_file.name)
                 for label, folder in predictions.items()}
        target = next(iter(pairs.values()))[0]
        s = target.shape[0] // 2
        path = Path(out) / f"{name}_slice{s}.png"
        save_panel(path, target[s], {label: pred[s] for label, (_, pred) in pairs.items()},
                   error_for=list(pairs), title=f"{name}, slice {s}")
        written.append(path)
        index.append((name, s, path.name))
    write_figure_index(out, index, "evaluation figures")
    return written


def _check_predictions(files: list[Path], time_limit: float) -> None:
    """Read the headers of the prediction files that exist under the time limit: a damaged one is
    refused (naming it) before any volume is read; a prediction must hold a (slices, H, W)
    'reconstruction'."""
    present = [p for p in files if p.is_file()]
    for path, header in zip(present, read_headers(present, time_limit)):
        if isinstance(header, MrdistillError):
            raise header
        if header["datasets"].get(PREDICTION_KEY) != 3:
            raise MrdistillError(f"{path}: no '{PREDICTION_KEY}' dataset of shape (slices, H, W)")


def evaluate_prediction_files(target_path: str | Path, predictions_path: str | Path, *,
                              challenge: str | None = None, acceleration: float | None = None,
                              acquisition: str | None = None,
                              metrics: tuple[str, ...] = FILE_METRICS, skip_bad: bool = False,
                              time_limit: float = FastMRIConfig.metadata_time_limit,
                              progress: bool = False) -> FileEvaluation:
    """Score `predictions_path/<name>.h5` against every matching `target_path/<name>.h5`.

    Raises `MrdistillError` (one line, naming the file) for an unreadable target (with `skip_bad`
    it is listed in `skipped` instead), a missing or unreadable prediction, a slice-count
    mismatch, non-finite predictions, or when no target file matches the filters. File metadata is
    read at most `time_limit` seconds per file (see the module docstring).
    """
    if challenge is not None:
        check_choice("challenge", challenge, tuple(TARGET_KEYS))
    for m in metrics:
        check_choice("metric", m, tuple(METRICS))
    predictions_path = Path(predictions_path)
    if not predictions_path.is_dir():
        raise MrdistillError(f"{predictions_path}: predictions folder not found")
    ev = FileEvaluation()
    chosen: list[tuple[Path, str]] = []
    files = list_h5_files(target_path)
    for tgt_file, header in zip(files, read_headers(files, time_limit)):
        try:
            if isinstance(header, MrdistillError):
                raise header
            if not (_matches(header["attrs"], "acquisition", acquisition)
                    and _matches(header["attrs"], "acceleration", acceleration)):
                ev.filtered_out += 1
                continue
            chosen.append((tgt_file, _target_key(header["datasets"], tgt_file, challenge)))
        except MrdistillError as exc:
            if not skip_bad:
                raise
            ev.skipped.append((str(tgt_file), str(exc)))
    _check_predictions([predictions_path / t.name for t, _ in chosen], time_limit)
    for tgt_file, key in tqdm(chosen, desc="evaluate", disable=not progress):
        target, pred = scored_pair(tgt_file, key, predictions_path / tgt_file.name)
        name = tgt_file.name[: -len(tgt_file.suffix)]
        ev.scored[name] = (tgt_file, key)
        peak = float(target.max())
        ev.per_volume.append({"volume": name, "slices": int(target.shape[0]),
                              **volume_metrics(target, pred, peak, names=metrics)})
        for s in range(target.shape[0]):
            ev.per_slice.append({"volume": name, "slice": s,
                                 **slice_metrics(target[s], pred[s], peak, names=metrics)})
    if not ev.per_volume:
        filters = ", ".join(f"{k}={v}" for k, v in (("acquisition", acquisition),
                                                     ("acceleration", acceleration)) if v is not None)
        raise MrdistillError(f"{target_path}: no target file matches {filters or 'the filters'}")
    return ev
