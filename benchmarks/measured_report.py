"""The tables of `benchmarks/measured_models.py`: per acceleration, the classical rows and every
model (mean ± sd over seeds of the mean over the brain's flip angles, and on how many seeds each
beats zero-filled and CG-SENSE), the held-out contrasts when models were fine-tuned, per image;
and `merge_docs`, which joins runs of one experiment that were split by seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from measured_eval import SETTINGS
from measured_finetune import HELD_OUT, SUFFIX
from mrdistill.atomic import atomic_write_text

BRAIN = "pyqmri_vfa"  # the in-vivo brain; the means are over its flip angles

FAMILY_INPUT = {"dccnn": "DC-CNN gets the coil combination with",
                "dccnn_sense": "DC-CNN (SENSE DC) gets all coils and the", "modl": "MoDL gets all coils and the",
                "varnet": "VarNet gets all coils and estimates its own maps; classical rows with"}

def mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def brain_mean(rows: list[dict], accel: int, model: str, metric: str, seed: int | None = None,
               flips: tuple[int, ...] | None = None) -> float:
    """Mean `metric` of `model` over the brain's flip angles (all, or `flips`) at `accel`."""
    got = [r[metric] for r in rows if r["acceleration"] == accel and r["model"] == model
           and r["volume"] == BRAIN and (seed is None or r.get("seed") == seed)
           and (flips is None or r["slice"] in flips)]
    return float(np.mean(got))


def model_table(rows: list[dict], accel: int, base: list[str], models: list[str], seeds: list[int],
                flips: tuple[int, ...] | None) -> list[str]:
    """Markdown rows: the classical rows, then each model's mean ± sd over seeds, and on how many
    seeds it beats zero-filled and CG-SENSE in PSNR (brain flip angles `flips`, or all)."""
    zf = brain_mean(rows, accel, "zero-filled", "psnr", flips=flips)
    cg = brain_mean(rows, accel, "CG-SENSE", "psnr", flips=flips)
    lines = ["| model | PSNR dB | SSIM | beats zero-filled (PSNR) | beats CG-SENSE (PSNR) |", "|---|---|---|---|---|"]
    for name in base:
        lines.append(f"| {name} | {brain_mean(rows, accel, name, 'psnr', flips=flips):.2f} | "
                     f"{brain_mean(rows, accel, name, 'ssim', flips=flips):.3f} | | |")
    for name in models:
        p = [brain_mean(rows, accel, name, "psnr", s, flips) for s in seeds]
        q = [brain_mean(rows, accel, name, "ssim", s, flips) for s in seeds]
        wins = lambda ref: f"{sum(v > ref for v in p)} of {len(p)} seeds"  # noqa: E731
        lines.append(f"| {name} | {mean_sd(p)} | {np.mean(q):.3f} | {wins(zf)} | {wins(cg)} |")
    return lines


def paired_gain(rows: list[dict], accel: int, seeds: list[int], suffix: str,
                flips: tuple[int, ...] | None) -> str:
    """"distilled minus plain student, paired by seed": each seed's PSNR difference (brain flip
    angles `flips`, or all) of the models named with `suffix`, and their mean ± sd."""
    gains = [brain_mean(rows, accel, "distilled" + suffix, "psnr", s, flips)
             - brain_mean(rows, accel, "student" + suffix, "psnr", s, flips) for s in seeds]
    return (f"Distilled minus plain student{suffix}, PSNR paired by seed: "
            f"{', '.join(f'{g:+.2f}' for g in gains)} dB (mean {mean_sd(gains)}).")


def markdown(doc: dict) -> str:
    """Per acceleration: the classical rows and every model (mean ± sd over seeds of the mean over
    the brain's 10 flip angles), whether it beats zero-filled and CG-SENSE, then per image."""
    rows, seeds = doc["rows"], doc["seeds"]
    models = list(dict.fromkeys(r["model"] for r in rows if r.get("seed") is not None))
    base = list(dict.fromkeys(r["model"] for r in rows if r.get("seed") is None))
    extra = f", data {json.dumps(doc['data_json'])}" if doc.get("data_json") else ""
    lines = ["# Models trained on the embedded corpus, scored on measured k-space", "",
             f"`{doc['command']}`", "",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['threads']} thread(s), torch "
             f"{doc['machine']['torch']}. Seeds: {', '.join(map(str, seeds))}. Training: "
             f"{doc.get('family', 'dccnn')} on {', '.join(doc['sources'])} at {doc['image_size']} px, "
             f"{doc.get('coils', 1)} simulated coil(s), data.mode complex, random mask "
             f"4x centre 0.08{extra}; teacher {doc['steps']['teacher']} steps, students "
             f"{doc['steps']['student']} steps each. Test: pyqmri's in-vivo brain (10 flip angles, "
             f"13 coils, 224 x 224; {FAMILY_INPUT[doc.get('family', 'dccnn')]} {doc['coil_maps']} maps) "
             f"and the twix phantom. Target max / zero-filled max, median: embedded training "
             f"slices {doc['peak_ratio']['train']:.2f}, measured brain "
             f"{doc['peak_ratio']['measured']:.2f}.", ""]
    if doc.get("finetune_epochs"):
        site = doc.get("finetune_labeled")
        lines[-1:-1] = [f"Then every model was fine-tuned on the measured data ({doc['finetune_epochs']} "
                        f"epochs of the training flip angles, benchmarks/measured_finetune.py): rows "
                        f"\"{SUFFIX.strip()}\"; only the held-out contrasts are a fair test of them." +
                        (f" Students in the site setting: {site} training contrasts fully sampled; "
                         f"the distilled student sees the others undersampled only, through the "
                         f"teacher (which fine-tuned on all of them); both students take the teacher's "
                         f"optimizer steps." if site else ""), ""]
    embedded = [m for m in models if SUFFIX not in m]
    for accel in doc["accelerations"]:
        lines += [f"## {accel}x (fastMRI random mask, centre {SETTINGS[accel]:g}): mean of the brain's "
                  "10 flip angles", ""] + model_table(rows, accel, base, embedded, seeds, None)
        if "distilled" in embedded and "student" in embedded:
            lines += ["", paired_gain(rows, accel, seeds, "", None)]
        if len(embedded) < len(models):
            lines += ["", f"Held-out contrasts only (flip angles {', '.join(map(str, HELD_OUT))}: no "
                      f"fine-tuning trained on them), mean:", ""] + \
                model_table(rows, accel, base, models, seeds, HELD_OUT)
            lines += ["", paired_gain(rows, accel, seeds, SUFFIX, HELD_OUT)]
        lines += ["", f"Per image ({accel}x), PSNR dB, models averaged over seeds:", "",
                  "| image | " + " | ".join(base + models) + " |", "|---" * (len(base + models) + 1) + "|"]
        images = list(dict.fromkeys((r["volume"], r["slice"]) for r in rows if r["acceleration"] == accel))
        for vol, s in images:
            cells = [np.mean([r["psnr"] for r in rows if r["acceleration"] == accel and r["model"] == n
                              and r["volume"] == vol and r["slice"] == s]) for n in base + models]
            lines.append(f"| {vol} {s} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"



# What differs between runs of one experiment split by seed (`--merge`); everything else must agree.
PER_RUN = ("command", "seeds", "runs", "rows", "figure", "peak_ratio", "machine")


def merge_docs(docs: list[dict], paths: list[str]) -> dict:
    """One document from runs that differ only in their seeds: the classical rows of the first,
    every run's model rows, the seeds and runs of all; refuses runs of different settings."""
    first = docs[0]
    for path, doc in zip(paths[1:], docs[1:]):
        differ = [k for k in first if k not in PER_RUN and doc.get(k) != first[k]]
        if differ:
            raise SystemExit(f"{path}: not the same experiment as {paths[0]} (they differ in {', '.join(differ)})")
    seeds = [s for doc in docs for s in doc["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--merge: a seed appears twice ({seeds})")
    rows = [r for r in first["rows"] if r.get("seed") is None]
    rows += [r for doc in docs for r in doc["rows"] if r.get("seed") is not None]
    peaks = [doc["peak_ratio"]["train"] for doc in docs]
    return {**first, "command": " && ".join(doc["command"] for doc in docs), "seeds": seeds,
            "runs": {k: v for doc in docs for k, v in doc["runs"].items()}, "rows": rows,
            "peak_ratio": {**first["peak_ratio"], "train": float(np.mean(peaks))}, "merged_from": paths}


def write_doc(doc: dict, out: Path) -> None:
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=2, default=str) + "\n")
    text = markdown(doc)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)
