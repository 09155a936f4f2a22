"""Run configs: the model, the optimiser, distillation stages and the whole `RunConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrdistill.config.checks import (ACCELERATION, BATCH, EPOCHS, EPOCHS_OR_NONE, LINES, MAX_STEPS,
                                      NAME, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, SEED, STEPS, Check,
                                      checked, each, integer, number, one_of)
from mrdistill.config.data import DataConfig

NON_EMPTY = Check("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
CHECKPOINT_CHOICE = one_of("last", "best")
PRECISIONS = ("fp32", "bf16", "fp16")  # optim.precision (train/precision.py)
STAGE_SELECTIONS = ("val_metric", "val_objective", "last")  # see StageConfig.select
CHANNELS_LAST = Check("true, false or 'auto'", lambda v: isinstance(v, bool) or v == "auto")
TEACHER_FORMATS = ("fastmri", "mrdistill")  # TeacherConfig.format


@dataclass
class ModelConfig:
    """A registered model and its constructor arguments."""

    name: str = checked("dccnn", NON_EMPTY)
    # Checked against the model's signature (`models.registry.check_model_kwargs`).
    kwargs: dict[str, Any] = checked(factory=dict)


OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")  # optim.optimizer (train/optimizers.py)
TASK_LOSSES = ("l1", "mse", "ssim")  # optim.loss (distill/task_loss.py)


def _is_task_loss(value: Any) -> bool:
    if isinstance(value, str):
        return value in TASK_LOSSES
    return (isinstance(value, dict) and bool(value) and all(k in TASK_LOSSES for k in value)
            and all(NON_NEGATIVE.ok(w) for w in value.values()) and any(w > 0 for w in value.values()))


TASK_LOSS = Check(f"one of {', '.join(map(repr, TASK_LOSSES))}, or a mapping of them to weights >= 0 "
                  f"(one > 0), e.g. {{ssim: 0.84, l1: 0.16}}", _is_task_loss)


@dataclass
class OptimConfig:
    """The optimiser, the task loss and a per-epoch lr schedule (`train.schedule`); the budget is
    `epochs` (or `max_steps` when set)."""

    # "adam", "adamw" (weight_decay decoupled), "rmsprop" or "sgd" (train/optimizers.py).
    optimizer: str = checked("adam", one_of(*OPTIMIZERS))
    lr: float = checked(1e-3, POSITIVE)
    weight_decay: float = checked(0.0, NON_NEGATIVE)
    betas: list[float] = checked(factory=lambda: [0.9, 0.999], check=each(number(ge=0, lt=1), length=2))  # adam, adamw
    eps: float = checked(1e-8, POSITIVE)  # adam, adamw, rmsprop
    momentum: float = checked(0.9, number(ge=0, lt=1))  # sgd, rmsprop (0: plain rmsprop)
    nesterov: bool = False  # sgd: Nesterov momentum
    alpha: float = checked(0.99, number(gt=0, lt=1))  # rmsprop: smoothing of the squared gradients
    # The task term of training and of every distillation stage, on the magnitude against the
    # target: "l1", "mse", "ssim" (1 - SSIM as fastMRI's SSIMLoss computes it, data range = the
    # volume max) or a weighted sum {name: weight} (distill/task_loss.py).
    loss: str | dict = checked("l1", TASK_LOSS)
    epochs: int = checked(40, EPOCHS)
    max_steps: int | None = checked(None, STEPS)
    batch_size: int = checked(4, BATCH)
    # "step" (StepLR), "plateau" (ReduceLROnPlateau on val_metric) or "cosine"
    scheduler: str = checked("step", one_of("step", "plateau", "cosine"))
    step_size: int = checked(40, EPOCHS)  # StepLR period in epochs
    gamma: float = checked(0.1, POSITIVE)  # lr factor of "step" and "plateau"
    patience: int = checked(10, EPOCHS_OR_NONE)  # "plateau": epochs without gain before a drop
    warmup_epochs: int = checked(0, EPOCHS_OR_NONE)  # linear warm-up: epoch e < W at lr (e + 1) / W
    grad_clip: float | None = checked(None, POSITIVE)  # max gradient norm; None: no clipping
    # "fp32", "bf16" (autocast; CPU or GPU) or "fp16" (autocast + GradScaler; CUDA only). FFTs and
    # data consistency run in float32 whatever is chosen (train/precision.py).
    precision: str = checked("fp32", one_of(*PRECISIONS))
    # Weights (and so activations) of the trained model in channels_last memory layout: on an
    # x86-64 CPU each part of a 3x3 conv then runs on oneDNN or a compiled kernel, whichever is
    # faster there (`accel.fast_training`; a DC-CNN training step 1.2-1.6x faster than in NCHW,
    # benchmarks/README.md). Same results up to float rounding, so a table recorded in NCHW
    # reproduces bit for bit only with `false`. "auto": on for CPU training where that path
    # applies (`accel.channels_last_applies`), off elsewhere.
    channels_last: bool | str = checked("auto", CHANNELS_LAST)
    # `last.pt` (full resume state) every this many steps (None: off), and after this many minutes
    # of work (0: off); always at each epoch end.
    checkpoint_every: int | None = checked(None, STEPS)
    checkpoint_minutes: float = checked(10.0, NON_NEGATIVE)
    # Non-finite steps skipped (counted in log.csv) before the run stops.
    skip_nonfinite: int = checked(0, integer(ge=0, le=MAX_STEPS))


@dataclass
class LoggingConfig:
    """What a run records besides log.csv."""

    tensorboard: bool = False  # events under <run>/tensorboard/ (needs the `tensorboard` extra)


@dataclass
class KDTermConfig:
    """One weighted KD loss from the registry (`mrdistill list`)."""

    name: str = checked("imitation", NON_EMPTY)
    weight: float = checked(1.0, NON_NEGATIVE)
    kwargs: dict[str, Any] = checked(factory=dict)


@dataclass
class TeacherCorrectionConfig:
    """A teacher that learns while teaching (`distill.teacher_correction`): during the stage a
    trainable copy of the teacher minimises rec_weight * L1(x_T, y) + edge_weight * L1(E(x_T), E(y))
    + feedback_weight * feedback(student -> teacher), at lr * teacher_lr_scale."""

    schedule: str = checked("joint", one_of("joint", "alternate"))  # "joint" (both from one step) or "alternate" (student, then teacher steps)
    teacher_every: int = checked(1, STEPS)  # joint: the teacher is updated on every teacher_every-th step
    student_steps: int = checked(1, STEPS)  # alternate: student steps per cycle
    teacher_steps: int = checked(1, STEPS)  # alternate: teacher steps per cycle
    teacher_lr_scale: float = checked(0.1, POSITIVE)
    rec_weight: float = checked(1.0, NON_NEGATIVE)
    edge_weight: float = checked(1.0, NON_NEGATIVE)
    edge_operator: str = checked("sobel", one_of("sobel", "log"))
    feedback_weight: float = checked(0.1, NON_NEGATIVE)
    feedback: str = checked("both", one_of("output", "features", "both"))  # "output", "features" (feature-KD pairs) or "both"


@dataclass
class StageConfig:
    """One distillation stage: `task_weight * L1(student, target) + sum(weight * kd)`.

    `select` is the epoch the stage keeps (`train.selection`): "val_metric" (best validation
    metric, e.g. PSNR), "val_objective" (lowest value of this stage's loss on the validation set)
    or "last". None: "val_metric" when the stage has a task term, else "val_objective": a stage
    that does not optimise the output (e.g. attention transfer alone) must not be judged by it.
    """

    epochs: int = checked(10, EPOCHS)
    task_weight: float = checked(1.0, NON_NEGATIVE)
    lr: float | None = checked(None, POSITIVE)  # None: optim.lr
    max_steps: int | None = checked(None, STEPS)  # None: optim.max_steps
    kd: list[KDTermConfig] = checked(factory=list)
    teacher_correction: TeacherCorrectionConfig | None = None  # None: the teacher stays frozen
    select: str | None = checked(None, one_of(*STAGE_SELECTIONS))

    @property
    def selection(self) -> str:
        """`select`, or its default for this stage."""
        if self.select is not None:
            return self.select
        return "val_metric" if self.task_weight > 0 else "val_objective"


@dataclass
class SelfSupConfig:
    """Self-supervised training from undersampled k-space only (REFERENCE.md section 4).

    `teachers` models (an "ensemble" checkpoint when > 1) learn together, each on its own
    re-undersampled or SSDU-split copy of the acquired set Omega; training batches carry no target.
    """

    method: str = checked("reundersample", one_of("reundersample", "ssdu"))  # "reundersample" (Wu & Li) or "ssdu" (Yaman et al.)
    teachers: int = checked(2, integer(ge=1, le=64))  # models trained together; 1 trains a single self-supervised model
    factors: list[float] = checked(factory=lambda: [2.0, 2.5], check=each(ACCELERATION))  # re-undersampling, per teacher
    acs_lines: int = checked(8, LINES)  # central columns every re-undersampling mask keeps (paper: 16 of ~256)
    dc_weight: float = checked(0.01, NON_NEGATIVE)  # weight of the DC regulariser in the re-undersampling loss
    rho: float = checked(0.4, OPEN_FRACTION)  # SSDU: fraction of Omega held out for the loss set Lambda
    selection: str = checked("gaussian", one_of("gaussian", "uniform"))  # SSDU: "gaussian" (2-D, around the centre) or "uniform"
    acs_block: list[int] = checked(factory=lambda: [4, 4], check=each(LINES, length=2))  # SSDU: never in Lambda
    agreement_weight: float = checked(0.1, NON_NEGATIVE)  # contrastive agreement between teachers (0 switches it off)
    agreement_temperature: float | None = checked(None, POSITIVE)  # None: 1 - cosine (paper); else InfoNCE
    fresh_masks: bool = True  # new re-undersampling/split masks every step (else fixed per slice)
    # Which weights the run keeps: "last" (label-free) or "best" (by the validation metric, which
    # reads validation targets, as the paper's schedule on validation SSIM does).
    checkpoint: str = checked("last", CHECKPOINT_CHOICE)


@dataclass
class AdaptiveConfig:
    """Distillation without targets from a teacher ensemble (REFERENCE.md section 4): the student
    learns MSE(w |x_S|, w |mean_T|), w = clip(avg / V, clip) (adaptive) or w = 1 (plain)."""

    weighting: str = checked("adaptive", one_of("adaptive", "plain"))
    clip: list[float] = checked(factory=lambda: [1.0 / 3.0, 3.0], check=each(POSITIVE, length=2))
    average: str = checked("precompute", one_of("precompute", "running"))  # "precompute" (one pass over the data set) or "running"
    momentum: float = checked(0.99, number(ge=0, lt=1))  # running estimate of the data-set mean variance
    cache_teacher: bool = True  # memoise teacher outputs (only with fixed training masks)
    checkpoint: str = checked("last", CHECKPOINT_CHOICE)  # as in SelfSupConfig


@dataclass
class TeacherConfig:
    """A teacher mrdistill did not train (`distill.teacher` as a mapping; see docs/teachers.md):
    the registered `model` built with `kwargs`, its weights read from `weights` with
    `torch.load(weights_only=True)` and checked against the model's keys and shapes."""

    model: str = ""
    kwargs: dict[str, Any] = checked(factory=dict)
    weights: str = ""
    # "fastmri": a plain state_dict (fastMRI's released *_state_dict.pt, any module's state_dict(),
    # or a Lightning checkpoint's "state_dict"); "mrdistill": an mrdistill checkpoint's "model".
    format: str = checked("fastmri", one_of(*TEACHER_FORMATS))


@dataclass
class DistillConfig:
    """Distil the teacher into the model of `RunConfig.model`, stage by stage. `teacher` is an
    mrdistill checkpoint path or a `TeacherConfig` mapping (a foreign teacher)."""

    teacher: str | TeacherConfig = ""
    init: str | None = None  # optional student checkpoint to start from
    # Start the student from selected teacher layers (`distill/init.py`): "teacher_layers" or None.
    init_from_teacher: str | None = checked(None, one_of("teacher_layers"))
    stages: list[StageConfig] = checked(factory=list)
    # Remember the frozen teacher's outputs per training slice (exact only with fixed training
    # masks: with fresh masks caching is off, said once). Stages whose teacher learns never use it.
    cache_teacher: bool = False
    # Unsupervised mode: distil an "ensemble" teacher without targets (replaces `stages`).
    adaptive: AdaptiveConfig | None = None


@dataclass
class SFTConfig:
    """Student-friendly teacher training (`RunConfig.sft`, SFT-KD-Recon): `RunConfig.model` is the
    teacher; the output of its cascade i also runs through cascades i+1..n of `student` (branches).
    Loss: teacher_weight * L1(x_T, y) + branch_weight * mean_i L1(x_Si, y)
    + imitation_weight * mean_i L1(x_Si, x_T). See docs/study.md."""

    student: ModelConfig = checked(factory=lambda: ModelConfig(
        "dccnn", {"cascades": 5, "convs": 3, "channels": 32, "in_channels": 1}))
    teacher_weight: float = checked(1.0, NON_NEGATIVE)
    branch_weight: float = checked(1.0, NON_NEGATIVE)
    imitation_weight: float = checked(1.0, NON_NEGATIVE)
    # Branch 0: the zero-filled image through all student cascades, so student cascade 1 is trained
    # too (the paper's branches start at 1 and leave it at random initialisation).
    input_branch: bool = True


@dataclass
class RunConfig:
    """Everything a `train` or `distill` run needs."""

    name: str = checked("run", NAME)  # the run folder is out_dir/name
    out_dir: str = checked("runs", NON_EMPTY)
    seed: int = checked(42, SEED)
    device: str = checked("auto", NON_EMPTY)  # auto (CUDA when available), cpu, cuda, cuda:N
    val_metric: str = checked("psnr", NON_EMPTY)
    data: DataConfig = checked(factory=DataConfig)
    model: ModelConfig = checked(factory=ModelConfig)
    # Start `model` from these weights (an mrdistill checkpoint of the same model name and kwargs),
    # e.g. to fine-tune a trained model on another site's data; a distilled student's start may
    # be given here or as `distill.init`, not both. None: freshly initialised from `seed`.
    init: str | None = None
    optim: OptimConfig = checked(factory=OptimConfig)
    distill: DistillConfig | None = None
    progress: bool = True
    selfsup: SelfSupConfig | None = None  # self-supervised training (no targets) when set
    sft: SFTConfig | None = None  # train a student-friendly teacher (with student branches) when set
    logging: LoggingConfig = checked(factory=LoggingConfig)
    # Python modules imported before models are built: where user models register (docs/teachers.md).
    plugins: list[str] = checked(factory=list)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name
