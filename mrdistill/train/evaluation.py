"""Evaluate several models on one test set and write the run's report, tables and figures."""

from __future__ import annotations

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


def evaluate_models(models: dict[str, nn.Module | None], dataset: Dataset,
                    device: str | torch.device = "cpu",
                    metrics: tuple[str, ...] = DEFAULT_METRICS, time_fast_path: bool = False) -> Evaluation:
    """Reconstruct `dataset` with each model (None = zero-filled) and score every volume.

    time_fast_path: also time `optimise_for_inference` of each model that has a fast CPU path
    (DC-CNN), reported as "fast ms/slice"; the scores always come from the eager model.
    """
    ev = Evaluation()
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
    columns = {name: {"params": f"{ev.params[name]:,}" if ev.params[name] else "-",
                      "ms/slice": f"{ev.ms_per_slice[name]:.2f}" if ev.params[name] else "-"}
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
                     figures: int = 3, zero_filled: str = "zero-filled") -> str:
    """metrics.json, per_slice.csv, report.md and figures/*.png (the middle slice of up to
    `figures` volumes) with figures/index.md; returns the Markdown table."""
    summary = summarise(ev.per_volume)
    extra = extra_columns(ev)
    table = markdown_table(summary, extra=extra)
    write_metrics_json(run_dir / "metrics.json", summary, extra=extra)
    write_per_slice_csv(run_dir / "per_slice.csv", ev.per_slice)
    write_report_md(run_dir / "report.md", title, table, notes)
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
