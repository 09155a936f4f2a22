"""Comparison figures: reconstructions side by side with their error maps, saved as PNG.

Uses matplotlib's object-oriented API (``Figure`` + ``FigureCanvasAgg``): no display, no pyplot
global state, so it is safe on headless machines and in worker threads.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from mrdistill.atomic import atomic_write_bytes
from mrdistill.errors import MrdistillError
from mrdistill.eval.metrics import psnr

TARGET = "target"
_PANEL_INCHES = 2.4  # one image tile; readable at dpi 100 without making large files
_DPI = 100


def _as_image(name: str, image: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    """``image`` as a float64 ``(H, W)`` array, checked against the target's shape."""
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        want = "(H, W)" if shape is None else str(shape)
        raise MrdistillError(f"image {name!r} has shape {arr.shape}; expected {want}")
    return arr


def _column_order(images: Mapping[str, np.ndarray]) -> list[str]:
    """Names in panel order: the first image (usually the zero-filled input), the target, the rest."""
    names = list(images)
    return [names[0], TARGET, *names[1:]]


def _slice_psnr(target: np.ndarray, image: np.ndarray) -> float:
    """PSNR of one slice against the target, peak = target max (the figure's grey-scale maximum)."""
    return psnr(target[None], image[None], float(target.max()))


def _format_psnr(value: float) -> str:
    return "PSNR inf" if math.isinf(value) else f"PSNR {value:.2f} dB"


def save_panel(
    path: str | os.PathLike[str],
    target: np.ndarray,
    images: Mapping[str, np.ndarray],
    error_for: Sequence[str],
    title: str | None = None,
    error_scale: float | None = None,
) -> None:
    """Save a PNG comparing reconstructions of one slice with the target, atomically.

    Args:
        path: output ``.png`` file (parent folders are created).
        target: reference image, real ``(H, W)``.
        images: name -> real ``(H, W)`` image, in display order, e.g. ``{"zero-filled": ...,
            "teacher": ..., "student": ..., "distilled": ...}``; the target is shown right after
            the first entry. "target" itself may not be a key.
        error_for: names from ``images`` whose ``|image - target|`` maps fill a second row, each
            under its image, on one shared colour scale with a colour bar.
        title: optional figure title.
        error_scale: upper end of the error colour scale; default the largest error shown.

    All images share one grey scale, 0 .. target max. Non-target titles carry the PSNR against the
    target on this slice (peak = target max of the slice, so it can differ from the volume PSNR).
    Raises ``MrdistillError`` on an empty ``images``, a name clash, a shape mismatch, or an
    ``error_for`` name not in ``images``.
    """
    if not images:
        raise MrdistillError("save_panel needs at least one image besides the target")
    if TARGET in images:
        raise MrdistillError(f"{TARGET!r} is reserved for the target; rename that image")
    missing = [name for name in error_for if name not in images]
    if missing:
        raise MrdistillError(f"error maps requested for {missing}, not among images {list(images)}")
    ref = _as_image(TARGET, target, None)
    imgs = {name: _as_image(name, img, ref.shape) for name, img in images.items()}
    imgs[TARGET] = ref
    order = _column_order(images)
    errors = {name: np.abs(imgs[name] - ref) for name in error_for}
    vmax = float(ref.max()) if ref.max() > 0 else 1.0
    emax = error_scale
    if emax is None:
        emax = max((float(e.max()) for e in errors.values()), default=0.0)
    emax = emax if emax > 0 else 1e-12  # identical images: keep a valid (non-empty) colour range

    rows = 2 if errors else 1
    aspect = ref.shape[0] / ref.shape[1]
    width = _PANEL_INCHES * len(order) + (0.6 if errors else 0.0)  # room for the colour bar
    # Constrained layout keeps columns aligned across rows even with the colour bar attached.
    fig = Figure(figsize=(width, _PANEL_INCHES * aspect * rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(order), squeeze=False)
    for col, name in enumerate(order):
        ax = axes[0, col]
        ax.imshow(imgs[name], cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
        label = name if name == TARGET else f"{name}\n{_format_psnr(_slice_psnr(ref, imgs[name]))}"
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    if errors:
        mappable = None
        for col, name in enumerate(order):
            ax = axes[1, col]
            ax.set_axis_off()
            if name in errors:
                mappable = ax.imshow(errors[name], cmap="inferno", vmin=0.0, vmax=emax)
                ax.set_title(f"|{name} - target|", fontsize=9)
        fig.colorbar(mappable, ax=list(axes[1]), shrink=0.9, label="absolute error")
    if title:
        fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    atomic_write_bytes(path, buf.getvalue())


FrontPoint = tuple[float | None, float, float, float]  # ms/slice, GFLOPs/slice, PSNR, PSNR sd


def save_front_plot(path: str | os.PathLike[str], series: Mapping[str, Sequence[FrontPoint]],
                    teacher: tuple[float | None, float, float], zero_filled: float | None,
                    title: str) -> None:
    """The quality-speed front as a PNG, atomically: PSNR against ms per slice (left) and against
    GFLOPs per slice (right), both on log axes; one line with sd error bars per variant (plain,
    each KD recipe), the teacher as a star, the zero-filled PSNR as a dashed horizontal line.

    series: variant -> points (ms/slice or None, GFLOPs/slice, PSNR dB, sd over seeds dB);
    teacher: (ms/slice or None, GFLOPs/slice, PSNR dB)."""
    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, k, xlabel in ((axes[0], 0, "ms per slice (eager, p50)"), (axes[1], 1, "GFLOPs per slice")):
        for variant, points in series.items():
            pts = [p for p in points if p[k] is not None]
            if pts:
                ax.errorbar([p[k] for p in pts], [p[2] for p in pts], yerr=[p[3] for p in pts],
                            marker="o", capsize=3, label=variant)
        if teacher[k] is not None:
            ax.plot([teacher[k]], [teacher[2]], marker="*", markersize=14, linestyle="none",
                    color="black", label="teacher")
        if zero_filled is not None:
            ax.axhline(zero_filled, linestyle="--", color="grey", label="zero-filled")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on short ranges
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test PSNR (dB)")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    atomic_write_bytes(path, buf.getvalue())


def write_figure_index(folder: str | os.PathLike[str], figures: Sequence[tuple[str, int, str]],
                       title: str) -> str:
    """`folder/index.md`: one row per figure (volume, slice, link to the PNG named relative to
    `folder`), written atomically; returns the path. An empty list still writes the index (it
    says that no figure was drawn)."""
    lines = [f"# {title}", ""]
    if figures:
        lines += ["| volume | slice | figure |", "|---|---|---|"]
        lines += [f"| {vol} | {s} | [{name}]({name}) |" for vol, s, name in figures]
    else:
        lines.append("No figures were drawn (--figures 0, or no volumes).")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(os.fspath(folder), "index.md")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path
