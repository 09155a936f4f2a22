"""`mrdistill benchmark`: models x backends on one batch of real slices, measured in interleaved
rounds, as a Markdown table and `benchmark.json`.

Per model: parameters and FLOPs per slice (`models.flops.count_flops`: conv multiply-adds x 2; no
bias, FFT or DC work). Per model and backend: latency p50/p95 per batch and per slice, throughput,
peak memory (RSS on CPU, `max_memory_allocated` on CUDA), achieved GFLOP/s and its fraction of the
fp32 matmul peak measured in the same rounds, the largest difference from the eager image
(relative to its max), the speed-up of every model over the first one (give the teacher first)
per backend and of every backend over eager per model, each the median over rounds of the
per-round time ratio. A backend a model does not support (no export graph, say) is measured for
the others and recorded as "n/a (why)" for it (`report["unavailable"]`); models keep their order.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from mrdistill.atomic import atomic_write_text
from mrdistill.config import TeacherConfig
from mrdistill.config.deploy import BenchSettings
from mrdistill.deploy.backends import Backend, build_backend, check_backends
from mrdistill.deploy.export import eager_reference
from mrdistill.deploy.inputs import ExampleBatch, example_batch
from mrdistill.deploy.measure import (MEMORY_METHOD, matmul_peak, peak_cuda_mib, peak_rss_mib,
                                      per_round_ratio, seconds, summarise, timed_rounds)
from mrdistill.errors import MrdistillError
from mrdistill.machine import cpu_model
from mrdistill.models import build_model, count_parameters
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import declared
from mrdistill.models.flops import count_flops
from mrdistill.physics.fft import magnitude
from mrdistill.train.checkpoint import load_checkpoint, model_from_checkpoint
from mrdistill.train.teachers import foreign_label, load_foreign_teacher

MAX_BATCH = 64  # neighbouring slices of the embedded volume
MAX_SIDE = 4096
MAX_COILS = 64


@dataclass
class BenchModel:
    """A model to measure: `label` names it in tables; `source` is its checkpoint or "built";
    `backends` (None: the settings' backends) the ones this model runs on."""

    label: str
    name: str
    kwargs: dict[str, Any]
    model: nn.Module
    source: str
    backends: list[str] | None = None


def check_settings(s: BenchSettings) -> None:
    """Range checks (the option named) and the backends' availability, before any work."""
    h, w = s.shape
    if not (8 <= h <= MAX_SIDE and 8 <= w <= MAX_SIDE):
        raise MrdistillError(f"--shape must be two sides in 8..{MAX_SIDE}, got {h} {w}")
    if not 1 <= s.batch <= MAX_BATCH:
        raise MrdistillError(f"--batch must be in 1..{MAX_BATCH}, got {s.batch}")
    if not 1 <= s.repeats <= 10_000:
        raise MrdistillError(f"--repeats must be in 1..10000, got {s.repeats}")
    if not 1 <= s.coils <= MAX_COILS:
        raise MrdistillError(f"--coils must be in 1..{MAX_COILS}, got {s.coils}")
    if not 64 <= s.matmul_size <= 16384:
        raise MrdistillError(f"--matmul-size must be in 64..16384, got {s.matmul_size}")
    if not s.backends:
        raise MrdistillError("--backends names no backend")
    check_backends(s.backends, s.device)


def machine_info() -> dict:
    """Where the numbers come from; the load average says how busy the machine was."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "onednn": torch.backends.mkldnn.is_available(),
            "loadavg_start": os.getloadavg(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                    if k in os.environ}}


def scored_image(out: object) -> Tensor:
    """The scored image float32 (N, 1, H, W) on CPU from any backend's output."""
    if isinstance(out, ReconOutput):
        return magnitude(out.image).float().cpu()
    return out[0].float().cpu()  # exported graphs: (image, raw)


def batch_for(model: nn.Module, s: BenchSettings) -> ExampleBatch:
    """The settings' example batch in the form `model` reads (complex or real images)."""
    complex_data = declared(model).complex_input
    return example_batch(s.batch, s.shape[0], s.shape[1], s.coils, complex_data, s.mask_kind, s.acceleration)


def _kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def _timer(backend: Backend):
    return lambda: seconds(backend.call, backend.sync)


def run_benchmark(models: list[BenchModel], s: BenchSettings, command: str = "",
                  progress: bool = True) -> dict:
    """Measure every model on every backend (see the module docstring) -> the report dict."""
    check_settings(s)
    report: dict[str, Any] = {"command": command, "machine": machine_info(), "memory_method": MEMORY_METHOD,
                              "settings": {**vars(s), "shape": list(s.shape)}, "models": {}, "results": {}}
    backends: dict[str, Backend] = {}
    references: dict[str, Tensor] = {}
    batches: dict[str, ExampleBatch] = {}
    report["unavailable"] = unavailable = {}
    with tempfile.TemporaryDirectory(prefix="mrdistill-bench-") as workdir:
        for m in models:
            batch = batches[m.label] = batch_for(m.model, s)
            ref = eager_reference(m.model, batch, False, f"{m.label} at {s.shape[0]}x{s.shape[1]}")
            references[m.label] = magnitude(ref)
            report["models"][m.label] = {
                "name": m.name, "kwargs": m.kwargs, "source": m.source,
                "parameters": count_parameters(m.model),
                "flops_per_slice": count_flops(m.model, batch.kspace[:1], batch.mask[:1])}
            for b in m.backends or s.backends:
                try:
                    backends[f"{m.label}/{b}"] = build_backend(b, m.model, batch, s.device, Path(workdir),
                                                               f"{m.label}-{b}".replace("/", "_"))
                except MrdistillError as exc:  # this model cannot run there: say why, measure the rest
                    unavailable.setdefault(m.label, {})[b] = str(exc)
        errors, memory = {}, {}
        for key, backend in backends.items():  # also the warm-up call of every backend
            out = backend.call()
            ref = references[key.split("/", 1)[0]]
            errors[key] = float((scored_image(out) - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
            on_cuda = backend.device.startswith("cuda")
            memory[key] = (peak_cuda_mib if on_cuda else peak_rss_mib)(backend.call)
        devices = sorted({_kind(b.device) for b in backends.values()})
        jobs = {f"peak/{d}": matmul_peak(s.matmul_size, d) for d in devices}
        jobs.update({k: _timer(b) for k, b in backends.items()})
        bar = tqdm(total=s.repeats, desc="rounds", disable=not progress, leave=False)
        times = timed_rounds(jobs, s.repeats, on_round=lambda: bar.update(1))
        bar.close()
    report["matmul_peak_gflops"] = {d: {"median": statistics.median(times[f"peak/{d}"]),
                                        "rounds": times[f"peak/{d}"]} for d in devices}
    for key, backend in backends.items():
        label, b = key.split("/", 1)
        flops = report["models"][label]["flops_per_slice"]
        report["results"].setdefault(label, {})[b] = {
            **summarise(times[key], times[f"peak/{_kind(backend.device)}"], flops, s.batch),
            "memory": memory[key],
            "max_rel_error_vs_eager": errors[key], "device": backend.device,
            "description": backend.description, "setup_seconds": backend.setup_seconds}
    report["reference_model"] = models[0].label
    add_ratios(report)
    report["machine"]["loadavg_end"] = os.getloadavg()
    return report


def add_ratios(report: dict) -> dict:
    """Speed-ups from the recorded per-round times (medians of per-round ratios): of every model
    over the reference (first) model per backend, and of every backend over eager per model."""
    results, first = report["results"], report["reference_model"]

    def times(label: str, backend: str) -> list[float]:
        return results[label][backend]["seconds_per_call"]

    report["speedup_vs_reference"] = {
        label: {b: per_round_ratio(times(first, b), times(label, b)) for b in rows if b in results.get(first, {})}
        for label, rows in results.items() if label != first}
    report["speedup_vs_eager"] = {
        label: {b: per_round_ratio(times(label, "eager"), times(label, b)) for b in rows if b != "eager"}
        for label, rows in results.items() if "eager" in rows}
    return report


def render_markdown(report: dict) -> str:
    """The report as Markdown: machine and settings, one row per model and backend, speed-ups."""
    m, st = report["machine"], report["settings"]
    peak = ", ".join(f"{d} {v['median']:.0f}" for d, v in report["matmul_peak_gflops"].items())
    load = " / ".join(" ".join(f"{v:.2f}" for v in m[k]) for k in ("loadavg_start", "loadavg_end"))
    lines = ["# mrdistill benchmark", "",
             f"- command: `{report['command']}`",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, {m['platform']}, "
             f"torch {m['torch']}; load average start / end {load} (shared machines: compare ratios, "
             "which are medians of per-round ratios over interleaved rounds)",
             f"- input: {st['batch']} slice(s) of {st['shape'][0]}x{st['shape'][1]}, {st.get('coils', 1)} "
             "coil(s) per call "
             f"({st['mask_kind']} {st['acceleration']:g}x masks), {st['repeats']} rounds; fp32 matmul "
             f"peak {peak} GFLOP/s (median of rounds; each row's fraction is of its "
             "device's); FLOPs = conv multiply-adds x 2",
             f"- memory: {report['memory_method']}", "",
             "| model | backend | params | GFLOP/slice | p50 ms/batch | p95 ms/batch | p50 ms/slice "
             "| slices/s | GFLOP/s | of peak | peak MiB (delta) | rel. err vs eager |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    unavailable = report.get("unavailable", {})
    for label, facts in report["models"].items():
        rows = report["results"].get(label, {})
        for b in st["backends"]:
            if b not in rows:
                why = unavailable.get(label, {}).get(b, "not measured")
                lines.append(f"| {label} | {b} | {facts['parameters']:,} | {facts['flops_per_slice'] / 1e9:.3f} "
                             f"| n/a ({why}) |" + " |" * 7)
                continue
            r = rows[b]
            lat, mem = r["latency_ms"], r["memory"]
            delta = "" if mem["delta_mib"] is None else f" ({mem['delta_mib']:+.0f})"
            lines.append(f"| {label} | {b} | {facts['parameters']:,} | {r['gflops_per_slice']:.3f} "
                         f"| {lat['p50_batch']:.1f} | {lat['p95_batch']:.1f} | {lat['p50_slice']:.2f} "
                         f"| {r['slices_per_s']:.2f} | {r['achieved_gflops']:.1f} "
                         f"| {100 * r['fraction_of_peak']:.0f}% | {mem['peak_mib']:.0f}{delta} "
                         f"| {r['max_rel_error_vs_eager']:.1e} |")
    lines.append("")
    for label, ratios in report["speedup_vs_reference"].items():
        if not ratios:
            continue
        text = ", ".join(f"{b} {v:.2f}x" for b, v in ratios.items())
        lines.append(f"Speed-up of {label} over {report['reference_model']} (per backend): {text}.")
    for label, ratios in report.get("speedup_vs_eager", {}).items():
        if not ratios:
            continue
        text = ", ".join(f"{b} {v:.2f}x" for b, v in ratios.items())
        lines.append(f"Speed-up over eager of {label} (per backend): {text}.")
    described = {b: r["description"] for rows in report["results"].values() for b, r in rows.items()}
    lines += ["", "Backends: " + "; ".join(f"{b}: {d}" for b, d in described.items()) + ".", ""]
    return "\n".join(lines)


def write_report(report: dict, out: str | Path) -> Path:
    """`<out>/benchmark.json`, written atomically."""
    path = Path(out) / "benchmark.json"
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return path


def checkpoint_label(path: Path) -> str:
    """runs/<run>/checkpoints/best.pt -> "<run>"; any other file -> its stem."""
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return path.parent.parent.name
    return path.stem


def unique_label(label: str, taken: list[str]) -> str:
    """`label`, or `label#n` when an earlier model of the table already has it (n: its position)."""
    return f"{label}#{len(taken) + 1}" if label in taken else label


def checkpoint_model(path: str | Path, taken: list[str]) -> BenchModel:
    """A checkpoint's model (eval mode, CPU), labelled by run folder or file stem (unique among
    the labels `taken`)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    label = unique_label(checkpoint_label(path), taken)
    return BenchModel(label, ckpt["model_name"], dict(ckpt.get("model_kwargs", {})),
                      model_from_checkpoint(ckpt, path), str(path))


def foreign_model(spec: TeacherConfig, taken: list[str]) -> BenchModel:
    """A foreign model with its weights (`--model NAME --weights FILE`), loaded and checked as
    `distill.teacher` loads one."""
    model = load_foreign_teacher(spec, "cpu", kwargs_key="--set")
    label = unique_label(foreign_label(spec), taken)
    return BenchModel(label, spec.model or type(model).__name__, dict(spec.kwargs), model, spec.weights)


def built_model(name: str, kwargs: dict[str, Any], taken: list[str]) -> BenchModel:
    """A freshly built (seed 0) registered model; latency does not depend on the weights."""
    try:
        model = build_model(name, seed=0, **kwargs).eval()
    except ValueError as exc:  # model constructors check their arguments with ValueError
        raise MrdistillError(f"model {name}: {exc}") from None
    label = unique_label(name + ("(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")" if kwargs else ""),
                         taken)
    return BenchModel(label, name, kwargs, model, "built (seed 0)")
