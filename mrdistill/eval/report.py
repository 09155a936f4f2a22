"""Writing evaluation results: summaries, a markdown table, metrics.json, per_slice.csv, report.md.

No plotting here (see ``figures.py``). Every file is written atomically: to a temporary file in the
same directory, then ``os.replace``, so a crash never leaves a half-written result behind.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrdistill.atomic import atomic_write_text
from mrdistill.errors import MrdistillError
from mrdistill.eval.metrics import aggregate

Summary = dict[str, dict[str, tuple[float, float]]]
Extra = Mapping[str, Mapping[str, str]]

METRICS_JSON_FORMAT = "mrdistill.metrics/1"
HEADERS: dict[str, str] = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "nmse": "NMSE",
    "hfen": "HFEN",
    "hfen_laplace": "HFEN (3x3 Laplacian)",
    "vif": "VIF",
}
DECIMALS: dict[str, int] = {"psnr": 2, "ssim": 4, "nmse": 4, "hfen": 4, "hfen_laplace": 4, "vif": 4}
_MISSING = "—"


def summarise(per_volume: Mapping[str, Sequence[Mapping[str, float]]]) -> Summary:
    """Model -> metric -> ``(mean, 2 sd)`` over volumes (see ``metrics.aggregate``).

    ``per_volume`` maps each model name to one dict of metric values per volume. Every volume of a
    model must carry the same metrics, so no mean silently covers a subset of the volumes.
    """
    summary: Summary = {}
    for model, volumes in per_volume.items():
        if not volumes:
            raise MrdistillError(f"model {model!r} has no volumes to summarise")
        names = list(volumes[0])
        for i, vol in enumerate(volumes):
            if set(vol) != set(names):
                raise MrdistillError(
                    f"model {model!r}: volume {i} has metrics {sorted(vol)}, "
                    f"volume 0 has {sorted(names)}"
                )
        summary[model] = {name: aggregate([vol[name] for vol in volumes]) for name in names}
    return summary


def _use_scientific(values: Sequence[float], decimals: int) -> bool:
    """True when fixed decimals would show a non-zero mean with under 2 significant digits
    (e.g. NMSE 0.0004): then the whole column switches to "4.12e-04" so it stays comparable."""
    return any(v != 0 and math.isfinite(v) and abs(v) < 10.0 ** (1 - decimals) for v in values)


def _cell(mean: float, two_sd: float, decimals: int, scientific: bool) -> str:
    spec = ".2e" if scientific else f".{decimals}f"
    return f"{mean:{spec}} ± {two_sd:{spec}}"


def _escape(text: str) -> str:
    """Keep a pipe inside a cell from splitting the markdown row."""
    return text.replace("|", "\\|")


def markdown_table(
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    extra: Extra | None = None,
    metrics: Sequence[str] = ("psnr", "ssim", "nmse", "hfen"),
    precision: Mapping[str, int] | None = None,
) -> str:
    """A GitHub markdown table: one row per model (in ``summary``'s order), cells "mean ± 2sd".

    Columns: "Model", one per metric (PSNR 2 decimals, SSIM/NMSE/HFEN 4; a column switches to
    scientific notation when a mean would round to zero), then the ``extra`` columns (model ->
    column -> text, e.g. params, ms/slice) in order of first appearance. ``precision`` overrides
    decimals per metric. A metric or extra value a model lacks shows as "—"; a metric no model has,
    or ``extra`` for a model not in ``summary``, raises ``MrdistillError``. Ends with a newline.
    """
    extra = extra or {}
    unknown = [m for m in extra if m not in summary]
    if unknown:
        raise MrdistillError(f"extra columns for unknown model(s) {unknown}; models: {list(summary)}")
    for name in metrics:
        if not any(name in row for row in summary.values()):
            have = sorted({k for row in summary.values() for k in row})
            raise MrdistillError(f"metric {name!r} is in no model's summary; have: {have}")
    decimals = {**DECIMALS, **(precision or {})}
    extra_cols = list(dict.fromkeys(col for model in summary for col in extra.get(model, {})))
    header = ["Model", *(HEADERS.get(m, m) for m in metrics), *extra_cols]
    scientific = {
        m: _use_scientific([row[m][0] for row in summary.values() if m in row], decimals.get(m, 4))
        for m in metrics
    }
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    for model, row in summary.items():
        cells = [model]
        for m in metrics:
            cells.append(_cell(*row[m], decimals.get(m, 4), scientific[m]) if m in row else _MISSING)
        cells += [str(extra.get(model, {}).get(col, _MISSING)) for col in extra_cols]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _json_number(x: float) -> float | str:
    """JSON has no NaN/inf (a perfect reconstruction has PSNR inf): store those as strings."""
    x = float(x)
    return x if math.isfinite(x) else str(x)  # "inf", "-inf", "nan"; float() reads them back


def write_metrics_json(
    path: str | os.PathLike[str],
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    extra: Extra | None = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write ``metrics.json``: ``{"format", "aggregate", "models": {model: {metric: {"mean",
    "two_sd"}}}, "extra": {model: {column: text}}, "meta": {...}}``, atomically.

    ``meta`` records the conventions used (data range, metric options), as JSON-serialisable values.
    Read it back with ``read_metrics_json``.
    """
    doc = {
        "format": METRICS_JSON_FORMAT,
        "aggregate": "mean and 2 x sample sd (ddof=1) over volumes",
        "models": {
            model: {
                m: {"mean": _json_number(mean), "two_sd": _json_number(two_sd)}
                for m, (mean, two_sd) in row.items()
            }
            for model, row in summary.items()
        },
        "extra": {model: {k: str(v) for k, v in cols.items()} for model, cols in (extra or {}).items()},
        "meta": dict(meta or {}),
    }
    atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_metrics_json(path: str | os.PathLike[str]) -> tuple[Summary, dict[str, dict[str, str]]]:
    """Read ``metrics.json`` back into ``(summary, extra)`` (non-finite values restored)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("format") != METRICS_JSON_FORMAT:
        raise MrdistillError(f"{path}: not a {METRICS_JSON_FORMAT} file (format {doc.get('format')!r})")
    summary = {
        model: {m: (float(v["mean"]), float(v["two_sd"])) for m, v in row.items()}
        for model, row in doc["models"].items()
    }
    return summary, {model: dict(cols) for model, cols in doc.get("extra", {}).items()}


def write_per_slice_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write one CSV row per slice, atomically. Header: union of the rows' keys in order of first
    appearance; a key a row lacks is left empty. Floats keep full precision (``repr``)."""
    if not rows:
        raise MrdistillError("no per-slice rows to write")
    write_rows_csv(path, rows)


def write_rows_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV, atomically: header = union of keys in order of first appearance, missing keys
    left empty, floats at full precision."""
    header = list(dict.fromkeys(key for row in rows for key in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_report_md(
    path: str | os.PathLike[str], title: str, table_md: str, notes: Sequence[str], appendix: str = ""
) -> None:
    """Write ``report.md``: a level-1 title, the table, the notes as a bullet list, then `appendix`
    (more Markdown sections), atomically."""
    parts = [f"# {title}", "", table_md.rstrip("\n"), ""]
    if notes:
        parts += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    if appendix:
        parts += [appendix.rstrip("\n"), ""]
    atomic_write_text(path, "\n".join(parts))
