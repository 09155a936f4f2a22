"""A teacher that learns while teaching (CHPNet's "teacher correction"), with a real gradient path.

CHPNet's released code freezes the teacher and uses a non-differentiable (Canny) edge map; here a
trainable copy of the teacher is updated during distillation with

    L_T = rec_weight * L1(|x_T|, y)                       (a) its own reconstruction error
        + edge_weight * L1(E(|x_T|), E(y))                (b) edge correction, E = Sobel or LoG
        + feedback_weight * feedback                      (c) feedback from the student

where feedback pulls the teacher toward what the student can follow: L1(|x_T|, |x_S|) on the outputs
("output") and/or the feature-KD distances with the student side fixed ("features": every KD term
with a `feedback` method, e.g. `hetero_feature`). The student's loss is the ordinary
`DistillObjective` one (task + weighted KD terms) against the current teacher, detached.

How the teacher reaches the optimizer: the objective keeps its trainable teacher copy out of
`parameters()` (the caller's teacher is never modified) and hands it to `train.loop.fit` through
`extra_param_groups(lr)`, one Adam group at `lr * teacher_lr_scale`. The two losses never share a
gradient path (each side sees the other detached), so "joint" (both updated from one backward) is
exact; with `teacher_every = k` the student learns at every step and the teacher at every k-th
(cheaper: the teacher's backward pass dominates the cost). "alternate" runs `student_steps`
student-only steps, then `teacher_steps` teacher-only steps (the idle side's parameters get no
gradient, so Adam leaves them untouched); note the student then gets fewer updates per epoch.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.config import TeacherCorrectionConfig
from mrdistill.data.sample import Sample
from mrdistill.distill.objective import DistillObjective
from mrdistill.distill.task_loss import TaskLossSpec, task_loss
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.eval.metrics import log_kernel as metric_log_kernel
from mrdistill.models.base import ReconOutput, run_model
from mrdistill.physics.fft import magnitude

SCHEDULES = ("joint", "alternate")
FEEDBACK = ("output", "features", "both")


def _per_channel_conv(x: Tensor, kernels: Tensor) -> Tensor:
    """float (N, C, H, W) convolved with K kernels (K, k, k), replicate padding -> (N, K*C, H, W)
    laid out kernel-major ([k0 c0.., k1 c0.., ...])."""
    n, c, h, w = x.shape
    pad = kernels.shape[-1] // 2
    flat = F.pad(x.reshape(n * c, 1, h, w), (pad, pad, pad, pad), mode="replicate")
    out = F.conv2d(flat, kernels[:, None].to(x.dtype))  # (N*C, K, H, W)
    return out.view(n, c, -1, h, w).transpose(1, 2).reshape(n, -1, h, w)


def sobel_gradients(x: Tensor) -> Tensor:
    """float (N, C, H, W) -> (N, 2C, H, W): horizontal then vertical Sobel derivatives (/8)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device) / 8.0
    return _per_channel_conv(x, torch.stack([kx, kx.T]))


def log_kernel(sigma: float, device: torch.device | None = None) -> Tensor:
    """Zero-sum Laplacian-of-Gaussian kernel float32 (k, k), k = 2 ceil(3 sigma) + 1: the HFEN
    metric's kernel (`eval.metrics.log_kernel`) at the size that covers +-3 sigma."""
    radius = max(1, math.ceil(3.0 * sigma))
    return metric_log_kernel(2 * radius + 1, sigma, device).float()


def log_response(x: Tensor, sigma: float = 1.0) -> Tensor:
    """float (N, C, H, W) -> (N, C, H, W): Laplacian of Gaussian (an edge/blob detector)."""
    return _per_channel_conv(x, log_kernel(sigma, x.device)[None])


EDGE_OPERATORS = {"sobel": sobel_gradients, "log": log_response}


def edge_loss(pred: Tensor, target: Tensor, operator: str = "sobel") -> Tensor:
    """L1 between edge maps of two images float (N, C, H, W) -> scalar (differentiable)."""
    check_choice("edge operator", operator, list(EDGE_OPERATORS))
    op = EDGE_OPERATORS[operator]
    return F.l1_loss(op(pred), op(target))


def _detached(out: ReconOutput) -> ReconOutput:
    return ReconOutput(out.image.detach(), {k: v.detach() for k, v in out.features.items()})


class TeacherCorrectionObjective(DistillObjective):
    """`DistillObjective` whose teacher (a trainable copy of `teacher`) is corrected while it teaches.

    Returns {"loss", "task", "kd/<name>", "teacher/rec", "teacher/edge", "teacher/feedback",
    "teacher/loss"}; every key is reported at every step (terms a phase does not optimise are
    computed without gradient), "loss" is what the current phase optimises.
    """

    def __init__(self, teacher: nn.Module, terms: dict[str, tuple[nn.Module, float]] | None = None,
                 task_weight: float = 1.0, config: TeacherCorrectionConfig | None = None,
                 loss: TaskLossSpec = "l1") -> None:
        cfg = config or TeacherCorrectionConfig()
        check_choice("teacher-correction schedule", cfg.schedule, SCHEDULES)
        check_choice("teacher-correction feedback", cfg.feedback, FEEDBACK)
        check_choice("edge operator", cfg.edge_operator, list(EDGE_OPERATORS))
        if min(cfg.student_steps, cfg.teacher_steps, cfg.teacher_every) < 1:
            raise MrdistillError("teacher_correction: teacher_every, student_steps and teacher_steps "
                                 "must be >= 1")
        if cfg.teacher_lr_scale <= 0:
            raise MrdistillError(f"teacher_correction.teacher_lr_scale must be > 0, got "
                                 f"{cfg.teacher_lr_scale}")
        if teacher is None:
            raise MrdistillError("teacher correction needs a teacher checkpoint")
        learner = copy.deepcopy(teacher)  # the caller's (frozen) teacher stays as it was
        super().__init__(learner, terms, task_weight, loss)
        learner.requires_grad_(True)
        self.config = cfg
        self.steps = 0
        if cfg.feedback == "features" and not any(hasattr(m, "feedback") for m in self.kd.values()):
            raise MrdistillError("teacher_correction.feedback 'features' needs a feature KD term "
                                 "with feedback (e.g. hetero_feature); use 'output' or 'both'")

    def extra_param_groups(self, lr: float) -> list[dict[str, object]]:
        """The learning teacher as one optimizer group (`train.loop.fit` adds it)."""
        teacher = self.teacher
        assert teacher is not None
        return [{"params": [p for p in teacher.parameters() if p.requires_grad],
                 "lr": lr * self.config.teacher_lr_scale}]

    def resume_state(self) -> dict[str, object]:
        """The learning teacher and the schedule's step counter (`train.state`)."""
        teacher = self.teacher
        assert teacher is not None
        return {"steps": self.steps,
                "teacher": {k: v.detach().cpu().clone() for k, v in teacher.state_dict().items()}}

    def load_resume_state(self, state: dict[str, object]) -> None:
        teacher = self.teacher
        assert teacher is not None
        teacher.load_state_dict(state["teacher"])  # type: ignore[arg-type]
        self.steps = int(state["steps"])  # type: ignore[call-overload]

    def phase(self, step: int) -> str:
        """"joint", "student" or "teacher": what training step `step` (0-based) updates."""
        if self.config.schedule == "joint":
            return "joint" if step % self.config.teacher_every == 0 else "student"
        cycle = self.config.student_steps + self.config.teacher_steps
        return "student" if step % cycle < self.config.student_steps else "teacher"

    def _student_loss(self, student: ReconOutput, teacher: ReconOutput, sample: Sample,
                      out: dict[str, Tensor]) -> Tensor:
        total = student.image.new_zeros(())
        if self.task_weight and sample.target is not None:
            out["task"] = task_loss(student, sample.target, sample.max_value, self.loss)
            total = total + self.task_weight * out["task"]
        for name, module in self.kd.items():
            out[f"kd/{name}"] = module(student, teacher, sample)
            total = total + self.weights[name] * out[f"kd/{name}"]
        return total

    def _teacher_loss(self, student: ReconOutput, teacher: ReconOutput, sample: Sample,
                      out: dict[str, Tensor]) -> Tensor:
        cfg = self.config
        image = magnitude(teacher.image)
        total = image.new_zeros(())
        if sample.target is not None:  # undersampled-only batches: feedback alone
            out["teacher/rec"] = F.l1_loss(image, sample.target)
            out["teacher/edge"] = edge_loss(image, sample.target, cfg.edge_operator)
            total = total + cfg.rec_weight * out["teacher/rec"] + cfg.edge_weight * out["teacher/edge"]
        feedback = []
        if cfg.feedback in ("output", "both"):
            feedback.append(F.l1_loss(image, magnitude(student.image).detach()))
        if cfg.feedback in ("features", "both"):
            feedback += [m.feedback(_detached(student), teacher) for m in self.kd.values()
                         if hasattr(m, "feedback")]
        if feedback:
            out["teacher/feedback"] = torch.stack(feedback).mean()
            total = total + cfg.feedback_weight * out["teacher/feedback"]
        out["teacher/loss"] = total
        return total

    def forward(self, model: nn.Module, sample: Sample) -> dict[str, Tensor]:
        training = model.training and torch.is_grad_enabled()
        phase = self.phase(self.steps) if training else "none"
        if training:
            self.steps += 1
        teacher = self.teacher
        assert teacher is not None
        teacher.train(phase in ("joint", "teacher"))
        feats = self.needs_features or self.config.feedback != "output"
        with torch.set_grad_enabled(phase in ("joint", "student")):
            student = run_model(model, sample, feats)
        with torch.set_grad_enabled(phase in ("joint", "teacher")):
            teacher_out = run_model(teacher, sample, feats)
        out: dict[str, Tensor] = {}
        with torch.set_grad_enabled(phase in ("joint", "student")):
            student_loss = self._student_loss(student, _detached(teacher_out), sample, out)
        with torch.set_grad_enabled(phase in ("joint", "teacher")):
            teacher_loss = self._teacher_loss(student, teacher_out, sample, out)
        if phase == "teacher":
            out["loss"] = teacher_loss
        elif phase == "student":
            out["loss"] = student_loss
        else:
            out["loss"] = student_loss + teacher_loss
        return out
