"""Evaluate several models on one test set and write the run's report, tables and figures.

On multi-coil k-space every table also gets the classical rows a scanner would offer next to
zero-filled: CG-SENSE, and L1-wavelet where sigpy is installed (`models.classical`), so a
learned model is measured against them; on single-coil data they are left out with a note
(CG-SENSE with one coil is the zero-filled image scaled by 1 / (1 + lam)).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from mrdistill.data.splits import evenly_subsample
from mrdistill.eval.figures import save_panel, write_figure_index
from mrdistill.eval.metrics import slice_metrics, volume_metrics
from mrdistill.eval.report import (markdown_table, summarise, write_metrics_json,
                                   write_per_slice_csv, write_report_md)
from mrdistill.models import count_parameters
from mrdistill.models.classical import CLASSICAL, ClassicalRecon
from mrdistill.train.inference import VolumeRecon, fast_seconds_per_slice, reconstruct

DEFAULT_METRICS = ("psnr", "ssim", "nmse", "hfen")


@dataclass
class Evaluation:
    """per_volume: model -> one metrics dict per volume; recons: model -> volume -> VolumeRecon."""

    per_volume: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    per_slice: list[dict[str, object]] = field(default_factory=list)
    ms_per_slice: dict[str, float] = field(default_factory=dict)
    fast_ms_per_slice: dict[str, float] = field(default_factory=dict)  # models with a fast path
    params: dict[str, int] = field(default_factory=dict)
    recons: dict[str, dict[str, VolumeRecon]] = field(default_factory=dict)
    classical: list[str] = field(default_factory=list)  # rows of `classical_baselines`
    notes: list[str] = field(default_factory=list)  # what the report should say about the rows


def _coils(dataset: Dataset) -> int | None:
    """The coil count of the data set's k-space (its first item); None for data that are not
    k-space reconstruction data (super-resolution: the input is a smaller image) or empty."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        return None
    first = dataset[0]
    kspace, zero_filled = getattr(first, "kspace", None), getattr(first, "zero_filled", None)
    if kspace is None or kspace.dim() != 3 or zero_filled is None or zero_filled.shape[-2:] != kspace.shape[-2:]:
        return None
    return int(kspace.shape[0])


def classical_baselines(dataset: Dataset) -> tuple[dict[str, nn.Module], list[str]]:
    """The classical rows for this data set ({row name: module}) and notes on them: CG-SENSE and
    (with sigpy) L1-wavelet on multi-coil k-space, none on single-coil data (with a note saying
    why) or on super-resolution data (no note)."""
    coils = _coils(dataset)
    if coils is None:
        return {}, []
    if coils < 2:
        return {}, ["no CG-SENSE row: single-coil data (with one coil CG-SENSE is the zero-filled "
                    "image scaled by 1 / (1 + lam))"]
    rows: dict[str, nn.Module] = {CLASSICAL["cg_sense"]: ClassicalRecon("cg_sense")}
    notes = ["CG-SENSE: Tikhonov-regularised SENSE by conjugate gradients with the data set's coil maps"]
    if importlib.util.find_spec("sigpy") is not None:
        rows[CLASSICAL["l1_wavelet"]] = ClassicalRecon("l1_wavelet")
        notes.append("L1-wavelet: sigpy's L1WaveletRecon with the same maps")
    else:
        notes.append("no L1-wavelet row: it needs sigpy (pip install 'mrdistill[measured]')")
    return rows, notes


def evaluate_models(models: dict[str, nn.Module | None], dataset: Dataset,
                    device: str | torch.device = "cpu",
                    metrics: tuple[str, ...] = DEFAULT_METRICS, time_fast_path: bool = False,
                    baselines: bool = True) -> Evaluation:
    """Reconstruct `dataset` with each model (None = zero-filled) and score every volume.

    time_fast_path: also time `optimise_for_inference` of each model that has a fast CPU path
    (DC-CNN), reported as "fast ms/slice"; the scores always come from the eager model.
    baselines: add the classical rows of `classical_baselines` after the zero-filled ones.
    """
    ev = Evaluation()
    if baselines:
        extra, ev.notes = classical_baselines(dataset)
        ev.classical = list(extra)
        plain = {k: m for k, m in models.items() if m is None}
        models = {**plain, **extra, **{k: m for k, m in models.items() if m is not None}}
    for name, model in models.items():
        recons, sec = reconstruct(model, dataset, device)
        ev.recons[name] = recons
        ev.ms_per_slice[name] = 1000.0 * sec
        fast = None if model is None or not time_fast_path else fast_seconds_per_slice(model, dataset, device)
        if fast is not None:
            ev.fast_ms_per_slice[name] = 1000.0 * fast
        ev.params[name] = 0 if model is None else count_parameters(model)
        ev.per_volume[name] = []
        for vol, r in recons.items():
            assert r.target is not None, "evaluation needs targets"
            ev.per_volume[name].append(volume_metrics(r.target, r.prediction, r.max_value, names=metrics))
            for k, s in enumerate(r.slices):
                row = {"model": name, "volume": vol, "slice": s}
                row.update(slice_metrics(r.target[k], r.prediction[k], r.max_value, names=metrics))
                ev.per_slice.append(row)
    return ev


def extra_columns(ev: Evaluation) -> dict[str, dict[str, str]]:
    """Parameters and ms per slice (eager, and the fast path where any model was timed on it) for
    the report table ("-" where a model has none)."""
    timed = {n for n in ev.per_volume if ev.params[n] or n in ev.classical}
    columns = {name: {"params": f"{ev.params[name]:,}" if ev.params[name] else "-",
                      "ms/slice": f"{ev.ms_per_slice[name]:.2f}" if name in timed else "-"}
               for name in ev.per_volume}
    if ev.fast_ms_per_slice:
        for name, row in columns.items():
            fast = ev.fast_ms_per_slice.get(name)
            row["fast ms/slice"] = "-" if fast is None else f"{fast:.2f}"
    return columns


def figure_slices(recons: dict[str, VolumeRecon], count: int) -> list[tuple[str, int]]:
    """`count` (volume, position) pairs spread over the test volumes (every volume when there are
    at most `count`): the middle slice of each."""
    return [(v, len(recons[v].slices) // 2) for v in evenly_subsample(sorted(recons), count)]


def write_evaluation(run_dir: Path, ev: Evaluation, title: str, notes: list[str],
                     figures: int = 3, zero_filled: str = "zero-filled", appendix: str = "") -> str:
    """metrics.json, per_slice.csv, report.md and figures/*.png (the middle slice of up to
    `figures` volumes) with figures/index.md; returns the Markdown table."""
    summary = summarise(ev.per_volume)
    extra = extra_columns(ev)
    table = markdown_table(summary, extra=extra)
    write_metrics_json(run_dir / "metrics.json", summary, extra=extra)
    write_per_slice_csv(run_dir / "per_slice.csv", ev.per_slice)
    write_report_md(run_dir / "report.md", title, table, [*notes, *ev.notes], appendix)
    first = next(iter(ev.recons.values()))
    models = [n for n in ev.recons if n != zero_filled]
    drawn = []
    for vol, pos in figure_slices(first, figures):
        rec = first[vol]
        images = {}
        if zero_filled in ev.recons:
            images[zero_filled] = ev.recons[zero_filled][vol].prediction[pos].numpy()
        for n in models:
            images[n] = ev.recons[n][vol].prediction[pos].numpy()
        assert rec.target is not None
        name = vol.replace("/", "_") + f"_s{rec.slices[pos]:03d}.png"
        save_panel(run_dir / "figures" / name, rec.target[pos].numpy(), images, error_for=models,
                   title=f"{vol} slice {rec.slices[pos]}")
        drawn.append((vol, rec.slices[pos], name))
    write_figure_index(run_dir / "figures", drawn, f"{title}: figures")
    return table
