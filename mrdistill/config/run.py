"""Run configs: the model, the optimiser, distillation stages and the whole `RunConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrdistill.config.data import DataConfig


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
    # `last.pt` (full resume state) every this many steps (None: off), and after this many minutes
    # of work (0: off); always at each epoch end.
    checkpoint_every: int | None = None
    checkpoint_minutes: float = 10.0
    skip_nonfinite: int = 0  # non-finite steps skipped (counted in log.csv) before the run stops


@dataclass
class LoggingConfig:
    """What a run records besides log.csv."""

    tensorboard: bool = False  # events under <run>/tensorboard/ (needs the `tensorboard` extra)


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
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N; saved resolved
    val_metric: str = "psnr"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig | None = None
    progress: bool = True
    selfsup: SelfSupConfig | None = None  # self-supervised training (no targets) when set
    sft: SFTConfig | None = None  # train a student-friendly teacher (with student branches) when set
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name
