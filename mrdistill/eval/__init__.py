"""Evaluation: image-quality metrics (torch), result files, comparison figures.

``figures`` (matplotlib) is imported lazily, on first use of ``save_panel``, so that importing
``mrdistill.eval`` for metrics alone stays light.
"""

from __future__ import annotations

from typing import Any

from mrdistill.eval.metrics import (
    DEFAULT_METRICS,
    METRICS,
    aggregate,
    hfen,
    hfen_laplace,
    log_kernel,
    nmse,
    psnr,
    slice_metrics,
    ssim,
    ssim_per_slice,
    vif,
    volume_metrics,
)
from mrdistill.eval.report import (
    markdown_table,
    read_metrics_json,
    summarise,
    write_metrics_json,
    write_per_slice_csv,
    write_report_md,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "aggregate",
    "hfen",
    "hfen_laplace",
    "log_kernel",
    "markdown_table",
    "nmse",
    "psnr",
    "read_metrics_json",
    "save_panel",
    "slice_metrics",
    "ssim",
    "ssim_per_slice",
    "summarise",
    "vif",
    "volume_metrics",
    "write_metrics_json",
    "write_per_slice_csv",
    "write_report_md",
]


def __getattr__(name: str) -> Any:
    """Import ``figures`` (and so matplotlib) only when ``save_panel`` is first asked for."""
    if name == "save_panel":
        from mrdistill.eval.figures import save_panel

        return save_panel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
