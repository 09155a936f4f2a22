"""`run_study`: every cell of the grid (trained or reused), one evaluation per acceleration, and the
study's report: `report.md` (tables), `study.csv`, `figures/<acc>.png`, `<acc>/per_slice.csv`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mrdistill.atomic import atomic_write_text
from mrdistill.config import StageConfig
from mrdistill.data.build import make_datasets
from mrdistill.data.datasets import SliceDataset
from mrdistill.data.sample import Sample, collate_samples
from mrdistill.distill.sft import check_pair
from mrdistill.eval.figures import save_panel
from mrdistill.eval.report import summarise, write_per_slice_csv
from mrdistill.machine import cpu_model as machine
from mrdistill.models import build_model
from mrdistill.rundir import is_ours, mark, open_output
from mrdistill.study.cells import Cell, assign_dirs, method_stages, plan_cells
from mrdistill.study.config import StudyConfig, save_study_config, validate
from mrdistill.study.executors import (FAILED, REUSED, SKIPPED, TRAINED, Outcome, Workers,
                                       check_executor, run_cells)
from mrdistill.study.table import acceleration_table, gap_table, spread_table, write_csv
from mrdistill.train.evaluation import evaluate_models, figure_slices
from mrdistill.train.runs import build_objective


@dataclass
class StudyResult:
    out: Path
    markdown: str
    rows: list[dict] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failed, or skipped after a failed dependency
    seconds: float = 0.0


def setup_objectives(teacher: nn.Module, student: nn.Module, schedules: list[list[StageConfig]],
                     sample: Sample, device: str) -> None:
    """Build every stage's objective on these (fresh) models and run its setup on one sample, so
    unknown methods, missing feature keys and mismatched shapes fail before any training."""
    sample = sample.to(device)
    teacher.to(device)
    student.to(device)
    for stages in schedules:
        for stage in stages:
            objective = build_objective(stage, teacher)
            if hasattr(objective, "setup"):
                objective.setup(student, sample)


def dry_check(cfg: StudyConfig, train: SliceDataset) -> None:
    """Before any training: every method's objective on fresh models (`setup_objectives`)."""
    teacher = build_model(cfg.teacher.name, seed=0, **cfg.teacher.kwargs)
    student = build_model(cfg.student.name, seed=0, **cfg.student.kwargs)
    check_pair(teacher, student)
    setup_objectives(teacher, student, [method_stages(m, cfg) for m in cfg.active_methods()],
                     collate_samples([train[0]]), cfg.device)


def _figure(path: Path, ev_recons: dict, cfg: StudyConfig, acc: float) -> None:
    """One slice: ZF, target, teachers, student and the figure method's Std-KD and SFT-KD (the
    models of cells that did not finish are left out)."""
    method = cfg.figure_method or cfg.active_methods()[0].label
    seed = cfg.seeds[0]
    names = {"ZF": "ZF", "Teacher": "teacher", "SFT teacher": "sft", "Student": f"student@{seed}",
             f"{method} Std-KD": f"{method}/std@{seed}", f"{method} SFT-KD": f"{method}/sft@{seed}"}
    names = {shown: key for shown, key in names.items() if key in ev_recons}
    first = ev_recons["ZF"]
    vol, pos = figure_slices(first, 1)[0]
    target = first[vol].target
    assert target is not None
    images = {shown: ev_recons[key][vol].prediction[pos].numpy() for shown, key in names.items()}
    save_panel(path, target[pos].numpy(), images, error_for=[n for n in images if n != "ZF"],
               title=f"{acc:g}x, {vol} slice {first[vol].slices[pos]}")


def missing_notes(outcomes: dict[str, Outcome], cells: list[Cell]) -> list[str]:
    """One note per cell that did not finish: its key, what happened and its log."""
    by = {c.key: c for c in cells}
    return [f"missing cell {key} ({o.status}: {o.error}" + (f"; log: {o.log})" if o.log else ")")
            for key, o in outcomes.items() if o.status in (FAILED, SKIPPED) and key in by]


def run_study(cfg: StudyConfig, on_cell: Callable[[Cell, Outcome], None] | None = None) -> StudyResult:
    """Run (or resume) the study; `on_cell(cell, outcome)` is called after each cell. Cells that
    fail are reported (`StudyResult.failed`, the report's notes) and left out of the tables."""
    start = time.perf_counter()
    validate(cfg)
    check_executor(cfg.executor)
    with Workers(cfg.executor, cfg.jobs_dir) as workers:  # one pool for all accelerations
        return _run_study(cfg, on_cell, workers, start)


def _run_study(cfg: StudyConfig, on_cell: Callable[[Cell, Outcome], None] | None,
               workers: Workers, start: float) -> StudyResult:
    out = cfg.out
    if (out / "study.yaml").is_file() and not is_ours(out):
        mark(out, "study")  # a study folder from before markers existed
    open_output(out, resume=True, command="study").commit()  # a study resumes in its folder
    save_study_config(cfg, out / "study.yaml")
    result = StudyResult(out, "")
    labels = [m.label for m in cfg.active_methods()]
    tables: list[str] = []
    missing: list[str] = []
    for i, acc in enumerate(cfg.accelerations):
        cells = plan_cells(cfg, acc)
        assign_dirs(cells, cfg.cells_dir)
        data = make_datasets(cells[0].cfg.data, cfg.seed)
        if i == 0:
            dry_check(cfg, data["train"])
        models, outcomes = run_cells(cells, lambda cell: data, cfg.seed, workers, on_cell)
        for key, outcome in outcomes.items():
            {TRAINED: result.trained, REUSED: result.reused}.get(outcome.status, result.failed).append(key)
        missing += missing_notes(outcomes, cells)
        tag = f"{acc:g}x"
        named = {"ZF": None, **{c.key.split("/", 1)[1]: models[c.key] for c in cells if c.key in models}}
        ev = evaluate_models(named, data["test"], cfg.device, metrics=tuple(cfg.metrics))
        summary = summarise(ev.per_volume)
        by_name = {c.key.split("/", 1)[1]: c for c in cells}
        for name, metrics in summary.items():
            c = by_name.get(name)
            # rows without a cell: "ZF" and the classical baselines of multi-coil data (CG-SENSE, ...)
            row = {"acceleration": acc, "row": c.label if c else name,
                   "teacher": c.variant if c else "-", "seed": c.seed if c else "",
                   "cell": str(c.run_dir) if c else ""}
            for m, (mean, two_sd) in metrics.items():
                row[m], row[f"{m}_2sd"] = mean, two_sd
            result.rows.append(row)
        write_per_slice_csv(out / tag / "per_slice.csv", ev.per_slice)
        _figure(out / "figures" / f"{tag}.png", ev.recons, cfg, acc)
        tables.append(f"### {tag} (cells: Std-KD -> SFT-KD; teacher row: ordinary -> SFT teacher)\n\n"
                      + acceleration_table(result.rows, acc, labels, cfg.metrics))
        n_test = len(data["test"])
        n_vol = len(ev.per_volume["ZF"])
    write_csv(out / "study.csv", result.rows)
    result.seconds = time.perf_counter() - start
    spread = spread_table(result.rows)
    parts = [f"# Study `{cfg.name}`", "", *tables,
             "### Teacher-student gap in PSNR (dB): ordinary teacher minus student", "",
             gap_table(result.rows, cfg.accelerations, labels)]
    if spread:
        parts += ["### Run-to-run spread (student seeds)", "", spread]
    parts += ["## Notes", "",
              f"- config: `{out / 'study.yaml'}`; seed {cfg.seed} (data, teachers), student seeds "
              f"{cfg.seeds}; device {cfg.device}; machine: {machine()}, "
              f"{torch.get_num_threads()} torch thread(s)",
              f"- data: {', '.join(cfg.data.sources)} at {cfg.data.image_size}px; test set "
              f"{n_test} slices in {n_vol} volumes; metrics per volume, averaged over volumes, then "
              f"over seeds (per-seed values and 2 sd over volumes in study.csv)",
              f"- SFT-KD students start from the SFT student branches: {cfg.sft_student_init}",
              f"- cells trained {len(result.trained)}, reused {len(result.reused)}"
              + (f", failed or skipped {len(result.failed)} (— in the tables)" if result.failed else "")
              + f"; executor {cfg.executor.kind}, jobs {cfg.executor.jobs}; {result.seconds:.0f} s",
              *[f"- {note}" for note in missing], ""]
    result.markdown = "\n".join(parts)
    atomic_write_text(out / "report.md", result.markdown)
    return result
