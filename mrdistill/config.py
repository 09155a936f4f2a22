"""Typed configs: the one place where defaults live.

A run is described by `RunConfig`; YAML files are read with `yaml.safe_load`, unknown keys are errors
that name the valid ones, and `--set a.b=value` overrides are applied on top (values parsed as YAML).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mrdistill.errors import MrdistillError


@dataclass
class MaskConfig:
    """Undersampling pattern (see `physics.masks.make_mask`)."""

    kind: str = "kdmri"
    acceleration: float = 4.0
    center_fraction: float | None = None
    center_lines: int | None = None
    path: str | None = None
    # Draw a new training mask for every slice and epoch (validation/test masks stay fixed per volume).
    fresh_train_masks: bool = False


@dataclass
class SuperResConfig:
    """Super-resolution data (`data.superres`): the slice is the high-res target and a
    low-res copy, `scale` times smaller per axis, the input."""

    scale: int = 2
    # "kspace": magnitude of the inverse FFT of the central k-space block (the MRI way);
    # "area": image-domain area averaging over scale x scale pixels.
    downsample: str = "kspace"


@dataclass
class FastMRIConfig:
    """fastMRI HDF5 folders (`data.dataset: fastmri`) and how their slices become samples; also
    used by `data.dataset: prepared`. See docs/data.md."""

    challenge: str = "singlecoil"  # "singlecoil" (reconstruction_esc) or "multicoil" (reconstruction_rss)
    train: str = "{challenge}_train"  # folders, relative to data.path unless absolute
    val: str = "{challenge}_val"
    test: str | None = None  # None: the val folder's volumes are split in two, val and test
    volume_fraction: float = 1.0  # use this fraction of each folder's volumes (evenly spaced)
    coil_mode: str = "combine"  # multi-coil: "combine" (one virtual coil) or "multi" (coils + smaps)
    normalize: bool = True  # divide k-space and targets by the volume max (outputs are scaled back)
    skip_bad: bool = False  # leave out unreadable files instead of stopping
    cache_dir: str | None = None  # metadata cache (None: ~/.cache/mrdistill; "" switches it off)


@dataclass
class PrepareConfig:
    """How `mrdistill prepare` turns image volumes into a k-space slice data set (all of it is
    recorded in the data set's prepare.json)."""

    mode: str = "real"  # "real" (k-space of the real image) or "complex" (smooth synthetic phase)
    coils: int = 1  # > 1: simulated coil maps, multi-coil k-space and RSS targets (mode complex)
    noise_std: float = 0.0  # complex Gaussian k-space noise std per component (image max 1)
    size: int | None = None  # square in-plane size (zero-pad to square, then resize); None: native
    split_by: str = "slab"  # "slab" (contiguous slabs of every volume) or "volume" (whole volumes)
    slab: int = 8  # slices per slab with split_by "slab"
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    min_foreground: float = 0.15  # drop slices whose foreground fraction is below this
    slice_axis: int = 2  # NIfTI array axis along which slices are taken
    seed: int = 0  # seeds the synthetic phase and noise (with the volume name and slice)


@dataclass
class PredictConfig:
    """How `mrdistill predict` undersamples fully sampled inputs and reads them. Files with a
    stored mask (fastMRI test files) are used as acquired; others get this mask, seeded per volume."""

    mask: MaskConfig = field(default_factory=lambda: MaskConfig(kind="random"))  # fastMRI's sampler
    coil_mode: str = "combine"  # multi-coil fastMRI input: as `FastMRIConfig.coil_mode`
    normalize: bool = True  # as `FastMRIConfig.normalize` (outputs are scaled back)
    slice_axis: int = 2  # NIfTI array axis along which slices are taken
    batch_size: int = 8
    device: str = "cpu"
    # On CPU, DC-CNN checkpoints run on the fast inference path (`optimise_for_inference`): the same
    # images up to float32 rounding (~1e-6 relative), 4-6x faster than eager at 256^2
    # (benchmarks/results/inference.md).
    fast: bool = True


@dataclass
class DataConfig:
    """Which images, how they become k-space, and how they are split."""

    sources: list[str] = field(default_factory=lambda: ["mni"])
    image_size: int = 128
    mode: str = "real"  # "real" (1-channel real image, KD-MRI) or "complex" (synthetic phase, 2 channels)
    noise_std: float = 0.0  # complex Gaussian noise std in k-space, relative to an image max of 1
    min_foreground: float = 0.15  # drop slices whose foreground fraction is below this
    slab: int = 8  # slices per slab when splitting a volume into train/val/test slabs
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    max_train_slices: int | None = None
    max_eval_slices: int | None = None
    # Semi-supervised setting: only this many training slices (evenly spaced) keep their fully
    # sampled target; the other training slices are undersampled-only (target None). Supervised
    # runs use the labelled ones; a distilled student also learns from the rest through the teacher.
    labeled_train_slices: int | None = None
    mask: MaskConfig = field(default_factory=MaskConfig)
    # Where slices come from: "embedded" (the corpus of `sources`), "fastmri" (HDF5 folders under
    # `path`, see `fastmri`) or "prepared" (a folder written by `mrdistill prepare`).
    dataset: str = "embedded"
    path: str | None = None
    fastmri: FastMRIConfig = field(default_factory=FastMRIConfig)
    superres: SuperResConfig | None = None  # super-resolution instead of reconstruction when set


@dataclass
class ModelConfig:
    """A registered model and its constructor arguments."""

    name: str = "dccnn"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Adam + StepLR; the budget is `epochs` (or `max_steps` when set)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 40
    max_steps: int | None = None
    batch_size: int = 4
    step_size: int = 40  # StepLR period in epochs
    gamma: float = 0.1
    grad_clip: float | None = None


@dataclass
class KDTermConfig:
    """One weighted KD loss from the registry (`mrdistill list`)."""

    name: str = "imitation"
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TeacherCorrectionConfig:
    """A teacher that learns while teaching (`distill.teacher_correction`): during the stage a
    trainable copy of the teacher minimises rec_weight * L1(x_T, y) + edge_weight * L1(E(x_T), E(y))
    + feedback_weight * feedback(student -> teacher), at lr * teacher_lr_scale."""

    schedule: str = "joint"  # "joint" (both from one step) or "alternate" (student, then teacher steps)
    teacher_every: int = 1  # joint: the teacher is updated on every teacher_every-th step
    student_steps: int = 1  # alternate: student steps per cycle
    teacher_steps: int = 1  # alternate: teacher steps per cycle
    teacher_lr_scale: float = 0.1
    rec_weight: float = 1.0
    edge_weight: float = 1.0
    edge_operator: str = "sobel"  # "sobel" or "log"
    feedback_weight: float = 0.1
    feedback: str = "both"  # "output", "features" (feature-KD pairs) or "both"


@dataclass
class StageConfig:
    """One distillation stage: `task_weight * L1(student, target) + sum(weight * kd)`."""

    epochs: int = 10
    task_weight: float = 1.0
    lr: float | None = None  # None: optim.lr
    max_steps: int | None = None  # None: optim.max_steps
    kd: list[KDTermConfig] = field(default_factory=list)
    teacher_correction: TeacherCorrectionConfig | None = None  # None: the teacher stays frozen


@dataclass
class SelfSupConfig:
    """Self-supervised training from undersampled k-space only (REFERENCE.md section 4).

    `teachers` models (an "ensemble" checkpoint when > 1) learn together, each on its own
    re-undersampled or SSDU-split copy of the acquired set Omega; training batches carry no target.
    """

    method: str = "reundersample"  # "reundersample" (Wu & Li) or "ssdu" (Yaman et al.)
    teachers: int = 2  # models trained together; 1 trains a single self-supervised model
    factors: list[float] = field(default_factory=lambda: [2.0, 2.5])  # re-undersampling, per teacher
    acs_lines: int = 8  # central columns every re-undersampling mask keeps (paper: 16 of ~256)
    dc_weight: float = 0.01  # weight of the DC regulariser in the re-undersampling loss
    rho: float = 0.4  # SSDU: fraction of Omega held out for the loss set Lambda
    selection: str = "gaussian"  # SSDU: "gaussian" (2-D, around the centre) or "uniform"
    acs_block: list[int] = field(default_factory=lambda: [4, 4])  # SSDU: never in Lambda
    agreement_weight: float = 0.1  # contrastive agreement between teachers (0 switches it off)
    agreement_temperature: float | None = None  # None: 1 - cosine (paper); else InfoNCE
    fresh_masks: bool = True  # new re-undersampling/split masks every step (else fixed per slice)
    # Which weights the run keeps: "last" (label-free) or "best" (by the validation metric, which
    # reads validation targets, as the paper's schedule on validation SSIM does).
    checkpoint: str = "last"


@dataclass
class AdaptiveConfig:
    """Distillation without targets from a teacher ensemble (REFERENCE.md section 4): the student
    learns MSE(w |x_S|, w |mean_T|), w = clip(avg / V, clip) (adaptive) or w = 1 (plain)."""

    weighting: str = "adaptive"  # "adaptive" or "plain"
    clip: list[float] = field(default_factory=lambda: [1.0 / 3.0, 3.0])
    average: str = "precompute"  # "precompute" (one pass over the data set) or "running"
    momentum: float = 0.99  # running estimate of the data-set mean variance
    cache_teacher: bool = True  # memoise teacher outputs (only with fixed training masks)
    checkpoint: str = "last"  # as in SelfSupConfig


@dataclass
class DistillConfig:
    """Distil the teacher checkpoint into the model of `RunConfig.model`, stage by stage."""

    teacher: str = ""
    init: str | None = None  # optional student checkpoint to start from
    # Start the student from selected teacher layers (`distill/init.py`): "teacher_layers" or None.
    init_from_teacher: str | None = None
    stages: list[StageConfig] = field(default_factory=list)
    # Unsupervised mode: distil an "ensemble" teacher without targets (replaces `stages`).
    adaptive: AdaptiveConfig | None = None


@dataclass
class SFTConfig:
    """Student-friendly teacher training (`RunConfig.sft`, SFT-KD-Recon): `RunConfig.model` is the
    teacher; the output of its cascade i also runs through cascades i+1..n of `student` (branches).
    Loss: teacher_weight * L1(x_T, y) + branch_weight * mean_i L1(x_Si, y)
    + imitation_weight * mean_i L1(x_Si, x_T). See docs/study.md."""

    student: ModelConfig = field(default_factory=lambda: ModelConfig(
        "dccnn", {"cascades": 5, "convs": 3, "channels": 32, "in_channels": 1}))
    teacher_weight: float = 1.0
    branch_weight: float = 1.0
    imitation_weight: float = 1.0
    # Branch 0: the zero-filled image through all student cascades, so student cascade 1 is trained
    # too (the paper's branches start at 1 and leave it at random initialisation).
    input_branch: bool = True


@dataclass
class RunConfig:
    """Everything a `train` or `distill` run needs."""

    name: str = "run"
    out_dir: str = "runs"
    seed: int = 42
    device: str = "cpu"
    val_metric: str = "psnr"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig | None = None
    progress: bool = True
    selfsup: SelfSupConfig | None = None  # self-supervised training (no targets) when set
    sft: SFTConfig | None = None  # train a student-friendly teacher (with student branches) when set

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass


def _resolve_type(tp: Any) -> Any:
    """Strip `X | None` down to X (the dataclass or container type we must build)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from a plain dict; unknown keys raise `MrdistillError` naming valid ones."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise MrdistillError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise MrdistillError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(valid))}")
    kwargs = {}
    for key, value in data.items():
        tp = _resolve_type(hints[key])
        kwargs[key] = _convert(tp, value, f"{where}.{key}")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise MrdistillError(f"{where}: expected a list, got {value!r}")
        return [_convert(_resolve_type(item_tp), v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise MrdistillError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (for YAML and checkpoints)."""
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise MrdistillError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise MrdistillError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; missing or malformed files raise `MrdistillError`."""
    path = Path(path)
    if not path.is_file():
        raise MrdistillError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MrdistillError(f"{path}: cannot read config ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise MrdistillError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MrdistillError(f"{path}: expected a mapping at the top level")
    return data


def load_run_config(path: str | Path | None, overrides: list[str] | None = None,
                    base: dict[str, Any] | None = None, preset: str | None = None) -> RunConfig:
    """YAML file (optional) on top of `base`, then the file's named preset, then `--set` overrides
    -> validated `RunConfig`.

    A config file may hold `presets: {name: {partial config}}`, e.g. a `smoke` preset that shrinks
    the run to seconds; `preset` picks one (unknown names are errors that list the file's presets).
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = _deep_merge(data, load_yaml(path))
    presets = data.pop("presets", None) or {}
    if preset is not None:
        if preset not in presets:
            where = f"{path}" if path is not None else "the config"
            valid = ", ".join(sorted(presets)) or "(none defined)"
            raise MrdistillError(f"{where} has no preset {preset!r}; valid: {valid}")
        data = _deep_merge(data, presets[preset])
    apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML next to the run."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
