"""`run_front`: the quality-speed front. One teacher; per student size a plain student and one
distilled student per recipe, each over the seeds (cells cached by config hash, as the study's);
everything scored on the students' test set and timed per size (`deploy.benchmark`); then
`front.csv`, `front_seeds.csv`, `front.md` (with the answer in words) and `front.png`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mrdistill.accel.fast_inference import has_fast_path
from mrdistill.atomic import atomic_write_text
from mrdistill.config import DataConfig, ModelConfig, RunConfig, to_dict
from mrdistill.data.build import make_datasets
from mrdistill.data.teacher_data import teacher_datasets
from mrdistill.data.sample import collate_samples
from mrdistill.deploy.benchmark import BenchModel, BenchSettings, batch_for, run_benchmark
from mrdistill.deploy.graphs import build_graph
from mrdistill.deploy.projection import make_projection
from mrdistill.deploy.runtime import require_export_extra
from mrdistill.errors import MrdistillError
from mrdistill.eval.figures import save_front_plot
from mrdistill.eval.report import summarise
from mrdistill.machine import cpu_model
from mrdistill.models import build_model, count_parameters
from mrdistill.models.flops import count_flops
from mrdistill.models.foreign import import_plugins
from mrdistill.models.registry import check_model_kwargs
from mrdistill.rundir import open_output
from mrdistill.study.cells import Cell, assign_dirs, cell_config
from mrdistill.study.executors import REUSED, TRAINED, Outcome, Workers, check_executor, run_cells
from mrdistill.study.front_config import (FrontConfig, recipe_stages, save_front_config,
                                          student_label, teacher_data_config, validate_front)
from mrdistill.study.front_table import (PLAIN, SizeFacts, aggregate, answer_lines, front_markdown,
                                         gain_lines, gain_markdown, plot_series, write_front_csv)
from mrdistill.study.runner import StudyResult, missing_notes, setup_objectives
from mrdistill.train.budget import matched_budget
from mrdistill.train.evaluation import evaluate_models
from mrdistill.train.runs import check_mask

TEACHER = "teacher"


@dataclass
class FrontResult(StudyResult):
    """The study's result plus the answer's lines (`rows`: the seed rows)."""

    answer: list[str] = field(default_factory=list)


def _run_config(cfg: FrontConfig, data: DataConfig, model: ModelConfig, optim: dict[str, Any],
                seed: int, **extra: Any) -> RunConfig:
    return cell_config(cfg, to_dict(data), model, optim, seed, plugins=list(cfg.plugins), **extra)


def plan_front_cells(cfg: FrontConfig, labeled: int, seen: int) -> list[Cell]:
    """The teacher, then per student size its plain students and its distilled students (one per
    recipe and seed), in dependency order. labeled / seen: the students' training slices with a
    target / all of them (the distilled students' steps are matched to the plain students')."""
    cells = [Cell(TEACHER, "train", _run_config(cfg, teacher_data_config(cfg), cfg.teacher,
                                                to_dict(cfg.teacher_optim), cfg.seed),
                  "Teacher", TEACHER, cfg.seed)]
    plain_optim = to_dict(cfg.optim)
    for student in cfg.students:
        label = student_label(student, cfg.teacher)
        model = ModelConfig(student.name, dict(student.kwargs))
        cells += [Cell(f"{label}/{PLAIN}@{s}", "train", _run_config(cfg, cfg.data, model, plain_optim, s),
                       label, PLAIN, s) for s in cfg.seeds]
        for recipe in cfg.recipes:
            stages = [to_dict(st) for st in recipe_stages(recipe)]
            stages, optim = matched_budget(stages, plain_optim, labeled, seen)
            for s in cfg.seeds:
                run = _run_config(cfg, cfg.data, model, optim, s,
                                  distill={"teacher": "", "stages": stages})
                cells.append(Cell(f"{label}/{recipe.label}@{s}", "distill", run, label,
                                  recipe.label, s, teacher=TEACHER))
    return cells


def _size(model: nn.Module, data: DataConfig) -> tuple[int, int]:
    """(parameters, FLOPs per slice) on an image_size x image_size example slice."""
    s = BenchSettings((data.image_size, data.image_size), coils=data.coils,
                      mask_kind=data.mask.kind, acceleration=data.mask.acceleration)
    batch = batch_for(model, s)
    return count_parameters(model), count_flops(model, batch.kspace, batch.mask)


def check_front(cfg: FrontConfig) -> dict[str, nn.Module]:
    """Before anything is written: the config, every model's arguments, and that no student is
    larger than the teacher (FLOPs per slice or parameters). -> label -> fresh model (seed 0)."""
    validate_front(cfg)
    check_executor(cfg.executor)
    import_plugins(cfg.plugins)
    if cfg.data.dataset == "embedded" and cfg.data.superres is None:
        check_mask(cfg.data.mask, cfg.data.image_size)
    check_model_kwargs(cfg.teacher.name, cfg.teacher.kwargs, "front.teacher.kwargs")
    models = {TEACHER: build_model(cfg.teacher.name, seed=0, **cfg.teacher.kwargs).eval()}
    for i, st in enumerate(cfg.students):
        check_model_kwargs(st.name, st.kwargs, f"front.students[{i}].kwargs")
        models[student_label(st, cfg.teacher)] = build_model(st.name, seed=0, **st.kwargs).eval()
    t_params, t_flops = _size(models[TEACHER], cfg.data)
    for label, model in list(models.items())[1:]:
        params, flops = _size(model, cfg.data)
        if params > t_params or flops > t_flops:
            raise MrdistillError(f"front.students: {label} is larger than the teacher ({params:,} "
                                 f"parameters, {flops / 1e9:.3f} GFLOPs per slice; the teacher "
                                 f"{t_params:,}, {t_flops / 1e9:.3f}): a front needs smaller students")
    return models


def supported_backends(model: nn.Module, wanted: list[str], shape: tuple[int, int], coils: int,
                       one_d_mask: bool) -> list[str]:
    """The backends of `wanted` this model really runs on: `fast` only where it has a fast path
    (DC-CNN on CPU; elsewhere it would be eager again), exported graphs only where the model
    exports and the `export` extra is installed, `cuda` only with a GPU."""
    out = []
    for b in wanted:
        if b == "fast" and not has_fast_path(model):
            continue
        if b == "cuda" and not torch.cuda.is_available():
            continue
        if b in ("onnxruntime", "torchscript"):
            try:
                if b == "onnxruntime":
                    require_export_extra()
                build_graph(model, make_projection("column" if one_d_mask else "grid", *shape), coils)
            except MrdistillError:
                continue
        out.append(b)
    return out


def measure_sizes(cfg: FrontConfig, models: dict[str, nn.Module], test: Any,
                  progress: bool) -> tuple[dict[str, SizeFacts], dict[str, Any]]:
    """Parameters, FLOPs per slice and p50 ms per slice per backend of every size (the teacher
    first), interleaved in rounds on test-sized inputs (`deploy.benchmark.run_benchmark`; the
    weights do not change the time, so one fresh model per size is timed). -> (facts, report)"""
    sample = test[0]
    h, w = sample.kspace.shape[-2:]
    coils = sample.kspace.shape[-3]
    # The matmul peak of each round is not reported here: a small one keeps the rounds short.
    s = BenchSettings((h, w), batch=cfg.latency.batch, repeats=cfg.latency.repeats,
                      device="cpu", matmul_size=256, mask_kind=cfg.data.mask.kind,
                      acceleration=cfg.data.mask.acceleration, coils=coils)
    one_d = sample.mask.shape[-2] == 1
    bench = [BenchModel(label, type(m).__name__, {}, m, "trained",
                        supported_backends(m, cfg.latency.backends, (h, w), coils, one_d))
             for label, m in models.items()]
    s.backends = sorted({b for m in bench for b in m.backends or []})
    report = run_benchmark(bench, s, command="study (front)", progress=progress)
    facts = {}
    for label, info in report["models"].items():
        ms = {b: r["latency_ms"]["p50_slice"] for b, r in report["results"][label].items()}
        facts[label] = SizeFacts(info["parameters"], info["flops_per_slice"] / 1e9,
                                 {b: ms.get(b) for b in cfg.latency.backends})
    return facts, report


def run_front(cfg: FrontConfig, on_cell: Callable[[Cell, Outcome], None] | None = None) -> FrontResult:
    """Run (or resume) the front; `on_cell(cell, outcome)` is called after each cell. Cells that
    fail are reported in the notes and their rows are missing."""
    start = time.perf_counter()
    fresh = check_front(cfg)
    data = make_datasets(cfg.data, cfg.seed)
    teacher_cfg = teacher_data_config(cfg)
    teacher_data = teacher_datasets(data, cfg.data, teacher_cfg, cfg.seed, "front.teacher_data")
    labeled, unlabeled = len(data["train"]), len(data.get("unlabeled", []))
    cells = plan_front_cells(cfg, labeled, labeled + unlabeled)
    assign_dirs(cells, cfg.cells_dir)
    sample = collate_samples([data["train"][0]])
    schedules = [recipe_stages(r) for r in cfg.recipes]
    for st in cfg.students:  # fresh models: the objectives' setup may attach adapters or hooks
        setup_objectives(build_model(cfg.teacher.name, seed=0, **cfg.teacher.kwargs),
                         build_model(st.name, seed=0, **st.kwargs), schedules, sample, cfg.device)
    out = cfg.out
    open_output(out, resume=True, command="study").commit()  # a front resumes in its folder
    save_front_config(cfg, out / "front.yaml")
    result = FrontResult(out, "")
    with Workers(cfg.executor, cfg.jobs_dir) as workers:
        cell_threads = workers.threads
        models, outcomes = run_cells(cells, lambda c: teacher_data if c.key == TEACHER else data,
                                     cfg.seed, workers, on_cell)
    for key, outcome in outcomes.items():
        {TRAINED: result.trained, REUSED: result.reused}.get(outcome.status, result.failed).append(key)
    ev = evaluate_models({"zero-filled": None, **models}, data["test"], cfg.device,
                         metrics=tuple(cfg.metrics))
    summary = summarise(ev.per_volume)
    by_key = {c.key: c for c in cells}
    seed_rows = [{"student": "zero-filled", "variant": "zero-filled", "seed": "", "cell": "",
                  **{m: v[0] for m, v in summary["zero-filled"].items()}}]
    seed_rows += [{"student": by_key[k].label if k != TEACHER else TEACHER,
                   "variant": by_key[k].variant, "seed": by_key[k].seed,
                   "cell": str(by_key[k].run_dir), **{m: v[0] for m, v in summary[k].items()}}
                  for k in models]
    facts, report = measure_sizes(cfg, fresh, data["test"], cfg.progress)
    atomic_write_text(out / "front_benchmark.json", json.dumps(report, indent=2) + "\n")
    lines = aggregate(seed_rows, facts, cfg.metrics)
    write_front_csv(out, seed_rows, lines, cfg.latency.backends)
    answer = (answer_lines(lines, cfg.delta, [PLAIN, *[r.label for r in cfg.recipes]])
              if TEACHER in models else ["No answer: the teacher did not finish (see the notes)."])
    save_front_plot(out / "front.png", *plot_series(lines), f"{cfg.name}: test PSNR against speed and size")
    result.answer, result.rows = answer, seed_rows
    result.seconds = time.perf_counter() - start
    notes = [f"config: `{out / 'front.yaml'}`; seed {cfg.seed} (data, teacher), student seeds "
             f"{cfg.seeds}; device {cfg.device}; machine: {cpu_model()}, "
             f"{torch.get_num_threads()} torch thread(s) here (latency); cells trained in this run: "
             f"{cell_threads} torch thread(s) each",
             f"data: {cfg.data.dataset} {', '.join(cfg.data.sources) if cfg.data.dataset == 'embedded' else cfg.data.path}"
             f", {cfg.data.mask.kind} {cfg.data.mask.acceleration:g}x; students: {labeled} fully "
             f"sampled training slices + {unlabeled} undersampled-only (seen by the distilled "
             f"students through the teacher); teacher data overrides: {cfg.teacher_data or 'none'}; "
             f"test set {len(data['test'])} slices",
             "PSNR/SSIM: per test volume, mean over volumes, then mean and sample sd over seeds; "
             "distilled students have the plain students' optimizer steps",
             f"ms/slice: p50 over {cfg.latency.repeats} interleaved rounds of {cfg.latency.batch} "
             f"slice(s) per call (deploy.benchmark); n/a: the model has no such backend; GFLOPs: "
             f"conv multiply-adds x 2 per slice",
             f"cells trained {len(result.trained)}, reused {len(result.reused)}"
             + (f", failed or skipped {len(result.failed)} (their rows are missing)" if result.failed else "")
             + f"; executor {cfg.executor.kind}, jobs {cfg.executor.jobs}; {result.seconds:.0f} s",
             *missing_notes(outcomes, cells)]
    gains = gain_markdown(gain_lines(seed_rows, [r.label for r in cfg.recipes]))
    result.markdown = front_markdown(cfg.name, lines, cfg.metrics, cfg.latency.backends, answer, notes,
                                     gains)
    atomic_write_text(out / "front.md", result.markdown)
    return result
