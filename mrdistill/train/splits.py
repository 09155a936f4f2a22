"""The volumes of a run's splits, recorded in the run folder (`splits.json`).

val chooses the best epoch (and the lr schedule's plateaus); test is held out and scored once, in
the run's report. `predict --run RUN --split test` and `evaluate --run RUN --split test` read the
record, so the held-out volumes have a name and nobody has to find them in `per_slice.csv`.

splits.json: {"splits": {"train": {"volumes": [id, ...], "files": [path, ...]}, "val": ..., "test":
...}, "meaning": {...}}; "files" (absolute paths) only for data read from files (fastMRI, prepared).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mrdistill.atomic import atomic_write_text
from mrdistill.data.fastmri import FastMRISliceDataset
from mrdistill.data.splits import SPLITS
from mrdistill.errors import MrdistillError

SPLITS_FILE = "splits.json"
MEANING = {"train": "the slices the model learns from",
           "val": "chooses the best epoch (and drives a plateau schedule)",
           "test": "held out: scored once, in the run's report"}


def split_volumes(dataset: Dataset) -> dict[str, list[str]]:
    """{"volumes": ids in order of first appearance, "files": paths (file data only)}."""
    if isinstance(dataset, FastMRISliceDataset):
        used = dict.fromkeys(v for v, _ in dataset.items())
        infos = [dataset.volumes[v] for v in used]
        return {"volumes": [i.name for i in infos],
                "files": [str(Path(i.path).resolve()) for i in infos]}
    records = getattr(dataset, "records", None)
    if records is None:
        raise MrdistillError(f"cannot list the volumes of a {type(dataset).__name__} data set")
    return {"volumes": list(dict.fromkeys(r.volume for r in records))}


def record_splits(run_dir: Path, data: dict[str, Dataset]) -> Path:
    """Write `run_dir/splits.json` for the train/val/test data sets of a run."""
    doc = {"splits": {s: split_volumes(data[s]) for s in SPLITS if s in data}, "meaning": MEANING}
    path = Path(run_dir) / SPLITS_FILE
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def read_split(run_dir: Path, split: str) -> dict[str, Any]:
    """The recorded {"volumes", "files"?} of `split`; `MrdistillError` (one line naming the run)
    where the run recorded none."""
    path = Path(run_dir) / SPLITS_FILE
    if not path.is_file():
        raise MrdistillError(f"{run_dir} records no splits (no {SPLITS_FILE}: the run was written "
                             f"before mrdistill recorded them, or is not a run); --split needs them")
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))["splits"]
        entry = splits[split]
        if not isinstance(entry.get("volumes"), list):
            raise TypeError
    except KeyError:
        raise MrdistillError(f"{path}: no split {split!r} recorded") from None
    except (ValueError, TypeError, AttributeError):
        raise MrdistillError(f"{path}: not a splits record (damaged?)") from None
    return entry


def check_same_volumes(dataset: Dataset, recorded: dict[str, Any], where: str) -> None:
    """`MrdistillError` unless `dataset` holds exactly the recorded volumes (the data the run
    was trained on has not changed since)."""
    found = split_volumes(dataset)["volumes"]
    if found != recorded["volumes"]:
        missing = [v for v in recorded["volumes"] if v not in found]
        extra = [v for v in found if v not in recorded["volumes"]]
        detail = (f"missing {missing[0]!r}" if missing else f"not recorded {extra[0]!r}" if extra
                  else "in another order")
        raise MrdistillError(f"{where}: the data no longer holds the volumes the run recorded "
                             f"({detail}); was data.path changed?")
