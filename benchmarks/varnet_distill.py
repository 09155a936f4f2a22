"""The VarNet distillation table: teacher, plain students and distilled students (run folders of
`mrdistill train/distill` with configs/varnet_*.yaml) -> PSNR/SSIM over seeds with their spread,
parameters, FLOPs per slice and inference ms/slice through `train.inference.reconstruct`.

    python benchmarks/varnet_distill.py --teacher runs/varnet_teacher \
        --plain runs/varnet_student_s42 runs/varnet_student_s43 runs/varnet_student_s44 \
        --kd runs/varnet_kd_s42 runs/varnet_kd_s43 runs/varnet_kd_s44 --repeats 5

Quality: each run's test-set scores (`evaluation/metrics.json` of `mrdistill evaluate --run RUN
--checkpoint best.pt`, else the run's own `metrics.json`; fastMRI metrics per volume, mean over
volumes); across seeds the mean and the sample sd (ddof=1) of those means. Speed: every model's
best checkpoint reconstructs the test set (batches of 8) in `--repeats` interleaved rounds (order
rotated each round); the median of the rounds is reported. Writes `benchmarks/results/varnet_distill.md`
and `.json` with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

from mrdistill.config import load_run_config
from mrdistill.data.build import make_task_datasets
from mrdistill.models import count_parameters
from mrdistill.models.flops import count_flops
from mrdistill.train.checkpoint import load_model
from mrdistill.train.inference import reconstruct

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def quality(run: Path) -> dict[str, float]:
    """The run's test scores: `mrdistill evaluate --run RUN` output if present, else the run's own."""
    path = run / "evaluation" / "metrics.json"
    models = json.loads((path if path.is_file() else run / "metrics.json").read_text())["models"]
    name = next(k for k in models if k != "zero-filled")
    return {"psnr": models[name]["psnr"]["mean"], "ssim": models[name]["ssim"]["mean"],
            "zf_psnr": models["zero-filled"]["psnr"]["mean"], "zf_ssim": models["zero-filled"]["ssim"]["mean"]}


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", nargs="+", required=True)
    p.add_argument("--plain", nargs="+", required=True)
    p.add_argument("--kd", nargs="+", required=True)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    groups = {"teacher": [Path(r) for r in args.teacher], "plain student": [Path(r) for r in args.plain],
              "distilled student": [Path(r) for r in args.kd]}
    test = make_task_datasets(load_run_config(groups["teacher"][0] / "config.yaml").data, 0)["test"]
    models = {g: load_model(runs[0] / "checkpoints" / "best.pt") for g, runs in groups.items()}
    sample = test[0]
    rows = {}
    for g, model in models.items():
        flops = count_flops(model, sample.kspace[None], sample.mask[None])
        rows[g] = {"params": count_parameters(model), "mflops_per_slice": flops / 1e6, "ms": []}
    order = list(models)
    for r in range(args.repeats):  # interleaved, order rotated each round
        for g in order[r % len(order):] + order[:r % len(order)]:
            with torch.no_grad():
                _, sec = reconstruct(models[g], test)
            rows[g]["ms"].append(1000.0 * sec)
    for g, runs in groups.items():
        q = [quality(run) for run in runs]
        rows[g].update({"runs": [str(r) for r in runs], "psnr": [x["psnr"] for x in q],
                        "ssim": [x["ssim"] for x in q], "zf_psnr": q[0]["zf_psnr"], "zf_ssim": q[0]["zf_ssim"]})
    lines = ["| model | seeds | PSNR (dB) mean ± sd | SSIM mean ± sd | params | MFLOPs/slice | ms/slice (median) |",
             "|---|---|---|---|---|---|---|",
             f"| zero-filled | - | {rows['teacher']['zf_psnr']:.2f} | {rows['teacher']['zf_ssim']:.4f} | - | - | - |"]
    for g, row in rows.items():
        (pm, ps), (sm, ss) = spread(row["psnr"]), spread(row["ssim"])
        lines.append(f"| {g} | {len(row['psnr'])} | {pm:.2f} ± {ps:.2f} | {sm:.4f} ± {ss:.4f} | "
                     f"{row['params']:,} | {row['mflops_per_slice']:.1f} | {statistics.median(row['ms']):.2f} |")
    per_seed = ["", "Per seed (PSNR / SSIM):", ""]
    for g, row in rows.items():
        per_seed.append(f"- {g}: " + ", ".join(f"{Path(r).name} {p:.2f} / {s:.4f}"
                                               for r, p, s in zip(row["runs"], row["psnr"], row["ssim"])))
    machine = f"{cpu_model()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"
    command = "python benchmarks/varnet_distill.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([f"machine: {machine}", f"command: `{command}`", ""] + lines + per_seed) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "varnet_distill.md").write_text(text)
    (RESULTS / "varnet_distill.json").write_text(json.dumps(
        {"machine": machine, "command": command, "rows": rows}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
