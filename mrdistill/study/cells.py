"""The study's cells: every trained model is a run whose folder is named by the hash of its config.

A cell is reused when its folder holds a `cell.json` with the same hash (written only after the run
finished), so an interrupted study resumes with the first unfinished cell, and a changed config
(budget, data, teacher, method) trains afresh instead of reusing stale weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from mrdistill.atomic import atomic_write_text
from mrdistill.config import DistillConfig, RunConfig, StageConfig, from_dict, to_dict
from mrdistill.data.datasets import SliceDataset
from mrdistill.study.config import StudyConfig, StudyMethod
from mrdistill.study.locks import try_lock, unlock
from mrdistill.train.checkpoint import load_model
from mrdistill.train.runs import distill_run, train_run
from mrdistill.train.sft_run import SFT_STUDENT

# /3: feature-only stages keep their best validation objective, not their best PSNR (issue 18), so
# distilled cells trained under /2 are stale.
CELL_FORMAT = "mrdistill.study-cell/3"
MARKER = "cell.json"
STD, SFT = "std", "sft"  # the two kinds of teacher


@dataclass
class Cell:
    """One trained model. kind: "train" (teacher, student), "sft" (SFT teacher) or "distill";
    teacher/init: keys of the cells whose teacher checkpoint / SFT student initialise this one."""

    key: str
    kind: str
    cfg: RunConfig
    label: str  # table row: "Teacher", "Student" or a method label
    variant: str  # "std", "sft" or "-"
    seed: int
    teacher: str | None = None
    init: str | None = None
    digest: str = ""

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir


def method_stages(method: StudyMethod, cfg: StudyConfig) -> list[StageConfig]:
    """A method's schedule: its own `stages`, or a feature stage (KD terms only) followed by an
    L1-to-target stage, as SFT-KD-Recon and KD-MRI train their students."""
    if method.stages:
        return copy.deepcopy(method.stages)
    return [StageConfig(epochs=cfg.feature_epochs, task_weight=0.0, kd=copy.deepcopy(method.kd),
                        select=cfg.feature_select),
            StageConfig(epochs=cfg.task_epochs, task_weight=1.0, kd=[])]


def cell_config(cfg: Any, data: dict[str, Any], model: Any, optim: dict[str, Any], seed: int,
                **extra: Any) -> RunConfig:
    """The run config of one cell: `cfg` (a study or front config) gives device, val_metric and
    progress; data and optim are dicts, model a `ModelConfig`; `extra` e.g. `distill`, `sft`."""
    base = {"seed": seed, "device": cfg.device, "val_metric": cfg.val_metric,
            "progress": cfg.progress, "data": data, "model": to_dict(model), "optim": optim}
    return from_dict(RunConfig, {**base, **extra}, "study cell")


def _run_config(cfg: StudyConfig, acc: float, model: Any, seed: int, *, teacher: bool = False,
                **extra: Any) -> RunConfig:
    data = to_dict(cfg.data)
    data["mask"]["acceleration"] = float(acc)
    optim = to_dict(cfg.optim)
    if teacher and cfg.teacher_epochs is not None:
        optim["epochs"] = cfg.teacher_epochs
    return cell_config(cfg, data, model, optim, seed, **extra)


def plan_cells(cfg: StudyConfig, acc: float) -> list[Cell]:
    """The cells of one acceleration, in dependency order: teachers, students, KD students."""
    tag = f"{acc:g}x"
    sft = to_dict(cfg.sft)
    sft["student"] = to_dict(cfg.student)
    cells = [Cell(f"{tag}/teacher", "train",
                  _run_config(cfg, acc, cfg.teacher, cfg.seed, teacher=True),
                  "Teacher", STD, cfg.seed),
             Cell(f"{tag}/sft", "sft",
                  _run_config(cfg, acc, cfg.teacher, cfg.seed, teacher=True, sft=sft),
                  "Teacher", SFT, cfg.seed)]
    cells += [Cell(f"{tag}/student@{s}", "train", _run_config(cfg, acc, cfg.student, s),
                   "Student", "-", s) for s in cfg.seeds]
    teachers = {STD: "teacher", SFT: "sft"}
    for method in cfg.active_methods():
        for variant in (STD, SFT):
            for s in cfg.seeds:
                init = f"{tag}/sft" if variant == SFT and cfg.sft_student_init else None
                distill = DistillConfig(teacher="", stages=method_stages(method, cfg))
                run = _run_config(cfg, acc, cfg.student, s, distill=to_dict(distill))
                cells.append(Cell(f"{tag}/{method.label}/{variant}@{s}", "distill", run,
                                  method.label, variant, s, teacher=f"{tag}/{teachers[variant]}",
                                  init=init))
    return cells


def without_nones(doc: Any) -> Any:
    """`doc` with every None-valued mapping entry removed (recursively): a config field added later
    with a None default (absent = None) then leaves the hashes of existing cells unchanged."""
    if isinstance(doc, dict):
        return {k: without_nones(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [without_nones(v) for v in doc]
    return doc


def assign_dirs(cells: list[Cell], root: Path) -> None:
    """Hash every cell (its config plus the hashes of the cells it depends on) and name its run
    folder `<root>/<key>-<hash>`; paths of dependencies are filled in after hashing."""
    by_key = {c.key: c for c in cells}
    for c in cells:  # dependency order: teachers first
        doc = to_dict(c.cfg)
        for k in ("name", "out_dir", "progress"):
            doc.pop(k)
        if doc.get("distill"):
            doc["distill"].pop("teacher")
            doc["distill"].pop("init")
        doc.update(kind=c.kind, format=CELL_FORMAT,
                   teacher=by_key[c.teacher].digest if c.teacher else None,
                   init=by_key[c.init].digest if c.init else None)
        c.digest = hashlib.sha1(json.dumps(without_nones(doc), sort_keys=True).encode()).hexdigest()
        c.cfg.out_dir = str(root)
        c.cfg.name = f"{re.sub(r'[^A-Za-z0-9_.@-]+', '-', c.key)}-{c.digest[:10]}"
        if c.cfg.distill is not None and c.teacher:
            c.cfg.distill.teacher = str(by_key[c.teacher].run_dir / "checkpoints" / "best.pt")
            if c.init:
                c.cfg.distill.init = str(by_key[c.init].run_dir / "checkpoints" / SFT_STUDENT)


def is_done(cell: Cell) -> bool:
    marker = cell.run_dir / MARKER
    if not marker.is_file() or not (cell.run_dir / "checkpoints" / "best.pt").is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("hash") == cell.digest
    except (OSError, ValueError):
        return False


def train_cell(cell: Cell, data: dict[str, SliceDataset], teacher: nn.Module | None) -> nn.Module:
    """Train one cell and mark it finished -> its best model (eval mode). A distill cell without
    an in-memory `teacher` loads the one its config names. A cell folder holding a `last.pt` (a
    killed or preempted run of this very config: the folder name is its hash) resumes from it,
    bit for bit; any other half-written folder is replaced."""
    start = time.perf_counter()
    resume = (cell.run_dir / "checkpoints" / "last.pt").is_file()
    if cell.kind == "distill":
        result = distill_run(cell.cfg, overwrite=not resume, datasets=data, teacher=teacher,
                             resume=resume)
    else:
        result = train_run(cell.cfg, overwrite=not resume, datasets=data, resume=resume)
    atomic_write_text(cell.run_dir / MARKER, json.dumps({
        "format": CELL_FORMAT, "hash": cell.digest, "key": cell.key,
        "seconds": round(time.perf_counter() - start, 1)}, indent=2) + "\n")
    return result.model.eval()


def load_cell(cell: Cell) -> nn.Module:
    """A finished cell's best model."""
    return load_model(cell.run_dir / "checkpoints" / "best.pt", cell.cfg.device)


def ensure(cell: Cell, data: dict[str, SliceDataset], models: dict[str, nn.Module],
           poll: float = 5.0) -> bool:
    """Load a finished cell's best model into `models[cell.key]`, or train it under the cell's
    lock (`study.locks`; while another live process holds it, wait for that one) and mark it
    finished. Returns True when this process trained it."""
    while not is_done(cell):
        if not try_lock(cell.run_dir):
            time.sleep(poll)  # another process trains it: wait for its marker or its end
            continue
        try:
            if is_done(cell):  # finished between the check and the lock
                break
            models[cell.key] = train_cell(cell, data, models.get(cell.teacher or ""))
            return True
        finally:
            unlock(cell.run_dir)
    models[cell.key] = load_cell(cell)
    return False
