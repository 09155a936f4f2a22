"""One objective for every stage: a task term plus weighted KD terms.

`DistillObjective(teacher=None, terms={})` is plain supervised training; with a teacher and terms it
is distillation. It returns `{"loss": ..., "task": ..., "kd/<name>": ...}` so logging needs no special
cases. The teacher is frozen: `eval()`, `requires_grad_(False)`, run under `torch.no_grad()`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.distill.hooks import FeatureHooks, attach_for_pairs, run_hooked
from mrdistill.distill.task_loss import TaskLossSpec, loss_weights, task_loss
from mrdistill.distill.teacher_cache import TeacherCache
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput, run_model


class DistillObjective(nn.Module):
    """task_weight * task_loss(|x_S|, target) + sum_k weight_k * kd_k(student, teacher, sample);
    the task loss is `loss` (`optim.loss`: "l1", "mse", "ssim" or a weighted sum; distill/task_loss.py).

    `terms` maps a name to (KD loss module, weight). The KD modules are submodules (their adapters
    are trained with the student); the teacher is kept out of `parameters()`. With `cache` the
    teacher's outputs are remembered per slice (`distill.teacher_cache`; only for a teacher that
    does not learn).

    >>> from mrdistill.config import DataConfig
    >>> from mrdistill.data.build import make_datasets
    >>> from mrdistill.data.sample import collate_samples
    >>> from mrdistill.distill import DistillObjective, build_kd
    >>> from mrdistill.models import build_model
    >>> data = make_datasets(DataConfig(image_size=32, max_train_slices=4, max_eval_slices=2, slab=2))
    >>> batch = collate_samples([data["train"][0], data["train"][1]])
    >>> teacher = build_model("dccnn", convs=5, channels=8, seed=0)
    >>> student = build_model("dccnn", convs=3, channels=8, seed=1)
    >>> objective = DistillObjective(teacher, {"attention": (build_kd("attention"), 1000.0),
    ...                                        "imitation": (build_kd("imitation"), 0.5)}, task_weight=0.5)
    >>> losses = objective(student, batch)
    >>> sorted(losses)
    ['kd/attention', 'kd/imitation', 'loss', 'task']
    >>> bool(losses["loss"] > 0)
    True
    """

    def __init__(self, teacher: nn.Module | None = None,
                 terms: dict[str, tuple[nn.Module, float]] | None = None,
                 task_weight: float = 1.0, loss: TaskLossSpec = "l1",
                 cache: TeacherCache | None = None) -> None:
        super().__init__()
        terms = terms or {}
        if terms and teacher is None:
            raise MrdistillError("KD terms need a teacher checkpoint")
        self.kd = nn.ModuleDict({name: module for name, (module, _) in terms.items()})
        self.weights = {name: float(w) for name, (_, w) in terms.items()}
        self.task_weight = float(task_weight)
        self.loss = loss_weights(loss)
        self._teacher = [teacher] if teacher is not None else []  # a list keeps it unregistered
        self.cache = cache
        # Forward hooks for pair keys that are module paths (`distill.hooks`), made by `setup`.
        self._hooks: tuple[FeatureHooks | None, FeatureHooks | None] = (None, None)
        if teacher is not None:
            teacher.eval().requires_grad_(False)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    @property
    def needs_features(self) -> bool:
        return any(getattr(m, "needs_features", False) for m in self.kd.values())

    @torch.no_grad()
    def setup(self, model: nn.Module, sample: Sample) -> None:
        """Run student and teacher once on `sample` and let every KD term create its student-side
        adapters (`term.setup(student, teacher, sample)`, e.g. FitNets regressors, whose sizes come
        from the features) and check its feature keys and shapes. `train.loop.fit` calls this
        before it builds the optimizer, so the adapters are trained and checkpointed, and bad
        pairs fail before any training. No-op without KD terms."""
        if not self.kd:
            return
        teacher = self.teacher
        assert teacher is not None
        feats = self.needs_features
        student_out = run_model(model, sample, feats)
        teacher_out = run_model(teacher, sample, feats)
        if feats:
            for hooks in self._hooks:
                if hooks is not None:
                    hooks.remove()
            self._hooks = attach_for_pairs(model, teacher, self.kd, student_out, teacher_out)
            student_out = self.run_student(model, sample)
            teacher_out = self.run_teacher(sample)
        for module in self.kd.values():
            if hasattr(module, "setup"):
                module.setup(student_out, teacher_out, sample)
            module(student_out, teacher_out, sample)  # every term, once: bad keys/shapes fail now

    def run_student(self, model: nn.Module, sample: Sample) -> ReconOutput:
        """The student's output, with the hooked module outputs among its features."""
        feats = self.needs_features
        return run_hooked(lambda: run_model(model, sample, feats), self._hooks[0])

    def run_teacher(self, sample: Sample) -> ReconOutput:
        """The teacher's output (no gradients), with the hooked module outputs among its features;
        from the cache for slices it has seen."""
        teacher, feats, hooks = self.teacher, self.needs_features, self._hooks[1]
        assert teacher is not None

        def run(part: Sample) -> ReconOutput:
            return run_hooked(lambda: run_model(teacher, part, feats), hooks)

        with torch.no_grad():
            if self.cache is None:
                return run(sample)
            return self.cache.outputs(sample, (feats, tuple(hooks.paths) if hooks else ()), run)

    def forward(self, model: nn.Module, sample: Sample) -> dict[str, Tensor]:
        student = self.run_student(model, sample)
        out: dict[str, Tensor] = {}
        total = student.image.new_zeros(())
        # A batch of undersampled-only slices (target None) learns from the teacher alone.
        if self.task_weight and (sample.target is not None or not self.kd):
            if sample.target is None:
                raise MrdistillError("task loss needs targets, but the data set has none "
                                     "(self-supervised data): set task_weight to 0")
            out["task"] = task_loss(student, sample.target, sample.max_value, self.loss)
            total = total + self.task_weight * out["task"]
        if self.kd:
            teacher_out = self.run_teacher(sample)
            for name, module in self.kd.items():
                out[f"kd/{name}"] = module(student, teacher_out, sample)
                total = total + self.weights[name] * out[f"kd/{name}"]
        out["loss"] = total
        return out
