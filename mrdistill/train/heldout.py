"""Score models on the held-out real images: images no recipe trains on (`data.sources.HELDOUT`).

A model trained on a template can lose to zero-filled on an image that fills its field of view or
shows other anatomy (docs/results.md section 7). These functions score any models on the
held-out images, one row per (image, model), mark where a model is below zero-filled and write
the per-image table; `mrdistill demo` and `benchmarks/heldout_real.py` use them.

    >>> rows = [{"image": "a", "model": "zero-filled", "psnr": 30.0, "ssim": 0.90},
    ...         {"image": "a", "model": "net", "psnr": 31.0, "ssim": 0.85}]
    >>> below_zero_filled(rows, ["net"])
    {'net': ['a']}
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mrdistill.config import DataConfig, from_dict, to_dict
from mrdistill.data.datasets import heldout_dataset
from mrdistill.data.sources import HELDOUT, SOURCES
from mrdistill.eval.report import summarise
from mrdistill.train.evaluation import Evaluation, evaluate_models, write_evaluation

METRICS = ("psnr", "ssim")
MEAN = "(mean)"


def installed_heldout(names: tuple[str, ...] = HELDOUT) -> tuple[tuple[str, ...], list[str]]:
    """The held-out images whose package is installed, and one hint per missing package."""
    have, hints = [], {}
    for name in names:
        src = SOURCES[name]
        if not src.installed():
            hints[src.extra] = f"{src.distribution or src.package} ({src.install_hint()})"
        else:
            have.append(name)
    return tuple(have), [f"held-out images need {h}" for h in hints.values()]


def heldout_config(trained: DataConfig, acceleration: float, sources: list[str] | None = None) -> DataConfig:
    """The data config a model was trained with, for testing: no augmentation, every training
    slice labelled, the given acceleration (and sources, for the template's test slabs)."""
    raw = to_dict(trained)
    raw["augment"] = {}
    raw["mask"]["acceleration"] = float(acceleration)
    raw["labeled_train_slices"] = None
    if sources is not None:
        raw["sources"] = sources
    return from_dict(DataConfig, raw, "data")


def heldout_rows(ev: Evaluation, where: str, acceleration: float) -> list[dict]:
    """One row per (image or volume, model) of an evaluation, then each model's mean (`MEAN`)."""
    rows = []
    for name, per_volume in ev.per_volume.items():
        for volume, values in zip(ev.recons[name], per_volume):
            rows.append({"set": where, "acceleration": acceleration, "image": volume, "model": name,
                         "slices": len(ev.recons[name][volume].slices), **values})
    for name, s in summarise(ev.per_volume).items():
        rows.append({"set": where, "acceleration": acceleration, "image": MEAN, "model": name,
                     "slices": sum(len(r.slices) for r in ev.recons[name].values()),
                     **{m: s[m][0] for m in METRICS}})
    return rows


def below_zero_filled(rows: list[dict], models: list[str]) -> dict[str, list[str]]:
    """Model -> the images (not the mean) where it is below zero-filled in PSNR or SSIM. rows: one
    set and acceleration of `heldout_rows`."""
    zf = {r["image"]: r for r in rows if r["model"] == "zero-filled"}
    return {m: [r["image"] for r in rows if r["model"] == m and r["image"] != MEAN
                and any(r[k] < zf[r["image"]][k] for k in METRICS)] for m in models}


def heldout_markdown(rows: list[dict], models: list[str]) -> str:
    """Per set and acceleration: a line per image, `PSNR / SSIM` per model; `(-P)`, `(-S)` mark
    a model below zero-filled in that metric."""
    out = []
    for where, acc in dict.fromkeys((r["set"], r["acceleration"]) for r in rows):
        sel = [r for r in rows if r["set"] == where and r["acceleration"] == acc]
        out += [f"### {where}, {acc:g}x", "", "| image | " + " | ".join(["zero-filled", *models]) + " |",
                "|---|" + "---|" * (len(models) + 1)]
        for image in dict.fromkeys(r["image"] for r in sel):
            by = {r["model"]: r for r in sel if r["image"] == image}
            zf = by["zero-filled"]
            cells = [f"{zf['psnr']:.2f} / {zf['ssim']:.4f}"]
            for m in models:
                flag = "".join(s for s, k in (("P", "psnr"), ("S", "ssim")) if by[m][k] < zf[k])
                cells.append(f"{by[m]['psnr']:.2f} / {by[m]['ssim']:.4f}" + (f" (-{flag})" if flag else ""))
            out.append(f"| {image} | " + " | ".join(cells) + " |")
        below = sum(len(v) for v in below_zero_filled(sel, models).values())
        out += ["", f"model-image pairs below zero-filled in PSNR or SSIM: {below}", ""]
    return "\n".join(out)


def write_heldout(folder: Path, models: dict[str, nn.Module], trained: DataConfig, acceleration: float,
                  seed: int, device: str) -> str:
    """Score `models` and zero-filled on the installed held-out images at `acceleration`, simulated
    as `trained` simulates its slices; writes `folder` (report.md with the mean table and the
    per-image one, metrics, figures with error maps) and returns one line for a parent report."""
    names, hints = installed_heldout()
    if not names:
        return "held-out real images: none installed; " + "; ".join(hints)
    ev = evaluate_models({"zero-filled": None, **models},
                         heldout_dataset(heldout_config(trained, acceleration), seed, names), device)
    rows = heldout_rows(ev, "held-out real images", acceleration)
    below = below_zero_filled(rows, list(models))
    summary = ", ".join(f"{m} {len(v)}" for m, v in below.items())
    line = (f"held-out real images (no recipe trains on them; {len(names)}: {', '.join(names)}): images where a "
            f"model is below zero-filled in PSNR or SSIM: {summary}; per image: {folder.name}/report.md")
    about = [f"{n}: {SOURCES[n].description} ({SOURCES[n].contrast})" for n in names]
    notes = [*about, *hints, f"k-space simulated from each image as for the training slices, {acceleration:g}x, "
             "one fixed mask per image seeded by its name; PSNR/SSIM per image (data range: its max); "
             "(-P), (-S): below zero-filled in that metric"]
    write_evaluation(folder, ev, "Held-out real images", notes, figures=len(names),
                     appendix="## Per image (PSNR dB / SSIM)\n\n" + heldout_markdown(rows, list(models)))
    return line
