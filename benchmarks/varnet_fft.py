"""The 2-D FFT inside exported VarNet graphs: DFT-as-matmul against ONNX's DFT operator, both in
ONNX Runtime (CPU), on the VarNet teacher and student of configs/varnet_teacher.yaml and
configs/varnet_student.yaml (their `model.kwargs`, weights seeded: latency does not depend on them).

    python benchmarks/varnet_fft.py --shape 320 320 --coils 4 16 --repeats 3

For each coil count, both models are exported with each transform (`deploy.graphs.build_graph(...,
fft=)`, the exporter `mrdistill export` uses) and run on the same batch of real multi-coil slices
(`deploy.inputs.example_batch`: embedded MNI slices, simulated coils, random 4x mask); the eager
model runs alongside as the reference. All candidates of one coil count are timed in the same
interleaved rounds (order rotated each round, `deploy.measure.timed_rounds`); the ratio
operator/matmul is the median of per-round ratios. Writes benchmarks/results/varnet_fft.{md,json}
with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from mrdistill.deploy.export import eager_reference, relative_error, runner_for, trace_graph
from mrdistill.deploy.graphs import build_graph
from mrdistill.deploy.inputs import example_batch
from mrdistill.deploy.measure import per_round_ratio, seconds, timed_rounds
from mrdistill.deploy.projection import make_projection
from mrdistill.machine import cpu_model
from mrdistill.models import build_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = {"teacher": ROOT / "configs" / "varnet_teacher.yaml", "student": ROOT / "configs" / "varnet_student.yaml"}
FFTS = ("matmul", "operator")


def model_kwargs(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["model"]["kwargs"]


def eager_job(model: torch.nn.Module, kspace: torch.Tensor, mask: torch.Tensor):
    """A closure timing one eager forward under `torch.no_grad()`."""
    def call() -> object:
        with torch.no_grad():
            return model(kspace, mask)
    return lambda: seconds(call)


def measure(coils: int, shape: tuple[int, int], batch: int, repeats: int, workdir: Path) -> dict:
    """Eager and both ONNX transforms of teacher and student at one coil count."""
    h, w = shape
    example = example_batch(batch, h, w, coils, True, "random", 4.0)
    args = example.graph_args(False)
    jobs, errors = {}, {}
    for role, config in CONFIGS.items():
        model = build_model("varnet", seed=0, **model_kwargs(config)).eval()
        reference = eager_reference(model, example, False, role)
        jobs[f"{role}/eager"] = eager_job(model, example.kspace, example.mask)
        for fft in FFTS:
            graph, _ = build_graph(model, make_projection("column", h, w), coils, fft)
            path = workdir / f"{role}-{coils}-{fft}.onnx"
            trace_graph(graph.eval(), args, "onnx", path)
            run = runner_for("onnx", path)
            errors[f"{role}/{fft}"] = relative_error(run(*args), reference)
            jobs[f"{role}/{fft}"] = lambda r=run: seconds(lambda: r(*args))
    for job in jobs.values():  # warm-up
        job()
    times = timed_rounds(jobs, repeats)
    out = {"seconds": times, "max_rel_error_vs_eager": errors,
           "median_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()}}
    out["operator_over_matmul"] = {role: per_round_ratio(times[f"{role}/operator"], times[f"{role}/matmul"])
                                   for role in CONFIGS}
    return out


def render(report: dict) -> str:
    m = report["machine"]
    lines = ["# FFT inside exported VarNet graphs: DFT-as-matmul vs ONNX's DFT operator", "",
             f"- command: `{report['command']}`",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads, torch {m['torch']}, "
             f"onnxruntime {m['onnxruntime']}, env {m['env']}; load average start / end {m['loadavg_start']} / "
             f"{m['loadavg_end']} (a shared machine: compare ratios from one run)",
             f"- input: {report['batch']} slice(s) of {report['shape'][0]}x{report['shape'][1]}, random 4x "
             f"mask, {report['repeats']} interleaved rounds (few: the machine is shared); median ms per call",
             "", "| coils | model | eager | ORT matmul DFT | ORT DFT operator | operator / matmul time "
             "| rel. err matmul | rel. err operator |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for coils, r in report["results"].items():
        for role in CONFIGS:
            ms, err = r["median_ms"], r["max_rel_error_vs_eager"]
            lines.append(f"| {coils} | {role} | {ms[f'{role}/eager']:.0f} | {ms[f'{role}/matmul']:.0f} "
                         f"| {ms[f'{role}/operator']:.0f} | {r['operator_over_matmul'][role]:.2f} "
                         f"| {err[f'{role}/matmul']:.1e} | {err[f'{role}/operator']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs=2, type=int, default=[320, 320])
    parser.add_argument("--coils", nargs="+", type=int, default=[4, 16])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "varnet_fft"))
    args = parser.parse_args()
    import onnxruntime

    report = {"command": " ".join(["python", *sys.argv]), "shape": args.shape, "batch": args.batch,
              "repeats": args.repeats,
              "models": {role: model_kwargs(path) for role, path in CONFIGS.items()},
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                          "platform": platform.platform(), "loadavg_start": os.getloadavg(),
                          "env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")
                                  if k in os.environ}},
              "results": {}}
    with tempfile.TemporaryDirectory(prefix="varnet-fft-") as tmp:
        for coils in args.coils:
            report["results"][coils] = measure(coils, tuple(args.shape), args.batch, args.repeats, Path(tmp))
            print(f"{coils} coils: {report['results'][coils]['median_ms']}", flush=True)
    report["machine"]["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
