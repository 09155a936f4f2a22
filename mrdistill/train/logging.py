"""A run's log: `log.csv` with one header for the whole run, and optional TensorBoard events.

Stages report different loss keys (stage 1 `kd/attention`, stage 2 `task` and `kd/imitation`), so
the header is the union of every key seen so far, in first-seen order; when a row brings a new key
the file is rewritten atomically with the wider header (earlier rows get empty cells). Every row of
the file therefore parses with the file's one header.

TensorBoard (`logging.tensorboard: true`) writes under `<run>/tensorboard/`: every loss term and the
learning rate per step, validation metrics and throughput (slices/s) per epoch, and per epoch an
image panel (zero-filled | target | output | error) of one fixed validation slice.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from mrdistill.atomic import atomic_write_text, record_written
from mrdistill.errors import MrdistillError
from mrdistill.train import distributed

LOG_NAME = "log.csv"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_MISSING = ("logging.tensorboard needs the tensorboard package: "
                       "pip install 'mrdistill[tensorboard]'")


def check_tensorboard() -> None:
    """Raise `MrdistillError` (one line) when the optional tensorboard package is not installed."""
    try:
        import tensorboard  # noqa: F401  (optional dependency, imported only when asked for)
    except ImportError:
        raise MrdistillError(TENSORBOARD_MISSING) from None


def _header(rows: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return list(keys)


def _csv_text(header: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class RunLog:
    """Rows of `log.csv` (kept in memory too: a resumed run rewrites the file from its checkpoint)
    and, when `tensorboard`, a TensorBoard writer under `<run_dir>/tensorboard/`."""

    def __init__(self, run_dir: Path, tensorboard: bool = False) -> None:
        self.path = Path(run_dir) / LOG_NAME
        self.rows: list[dict[str, Any]] = []
        self.header: list[str] = []
        self.tensorboard = tensorboard
        self.writes = distributed.is_main()  # under torchrun only rank 0 writes (rows kept by all)
        self._writer: Any = None
        if tensorboard:
            check_tensorboard()

    def reset(self, rows: list[dict[str, Any]], step: int = 0) -> None:
        """Make `log.csv` hold exactly `rows` (a resumed run: the rows its checkpoint knows); the
        TensorBoard events after `step` (written after that checkpoint) are dropped."""
        self.rows = [dict(r) for r in rows]
        self.header = _header(self.rows)
        if not self.writes:
            return
        if self.rows:
            atomic_write_text(self.path, _csv_text(self.header, self.rows))
        else:
            self.path.unlink(missing_ok=True)
        if self.tensorboard:
            self._open_writer(purge_step=step)

    def append(self, row: dict[str, Any]) -> None:
        """Add one row; rewrites the file (atomically) when the row brings a new key."""
        self.rows.append(dict(row))
        if not self.writes:
            return
        if self.path.exists() and set(row) <= set(self.header):
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.header, lineterminator="\n").writerow(row)
            return
        self.header = _header(self.rows)
        atomic_write_text(self.path, _csv_text(self.header, self.rows))

    def _open_writer(self, purge_step: int | None = None) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency

            self._writer = SummaryWriter(str(self.path.parent / TENSORBOARD_DIR), purge_step=purge_step)
            record_written(self.path.parent / TENSORBOARD_DIR)  # its event files are mrdistill's
        return self._writer

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        """TensorBoard scalars `<prefix>/<key>` at the run's global step (no-op without TensorBoard)."""
        if not (self.tensorboard and self.writes):
            return
        writer = self._open_writer()
        for key, value in values.items():
            writer.add_scalar(f"{prefix}/{key}", value, step)

    def image(self, step: int, tag: str, panel: torch.Tensor) -> None:
        """A TensorBoard image, `panel`: float (H, W) in [0, 1] (no-op without TensorBoard)."""
        if self.tensorboard and self.writes:
            self._open_writer().add_image(tag, panel[None].clamp(0, 1), step, dataformats="CHW")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
