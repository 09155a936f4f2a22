"""Full resume state: what `last.pt` must hold for a killed run to continue bit-for-bit.

A run is a sequence of `fit` calls (stages: "train", or "stage1", "stage2", ... of a distillation).
`RunState` follows the run across its stages; `last.pt` carries, besides the model payload
(`checkpoint.model_payload`: model, student-side KD modules in "extra"), a "resume" section:

    {"version", "stage_index", "stage",
     "position": StagePosition as a dict (epoch, batch, step, loss sums, skipped steps, best so far,
                 history, the data-order generator's state at the start of the unfinished epoch),
     "best_model": state_dict of the stage's best weights (None: none yet),
     "optimizer", "scheduler", "scaler" (the fp16 GradScaler's state; {} without one), "objective" (hooks, below),
     "completed": finished stages as FitResult dicts, "carried": state_dicts of modules trained by
     finished stages that later stages use (a corrected teacher),
     "ranks": {"world_size", "sums": every rank's loss sums of the unfinished epoch} (under
     torchrun the position is rank 0's, the same on every rank but for those sums; a run resumes
     only with the world size it was written with)}

Every random generator a run draws from is in it: the data order (the loader's generator), fresh
training masks (a function of seed and epoch), and generators held by objectives (fresh SSDU /
re-undersampling masks). Objectives expose non-tensor state through two optional methods that any
module inside them may define: `resume_state() -> dict` and `load_resume_state(dict)`. Nothing in
training draws from torch's global generator, so it is neither saved nor restored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrdistill.errors import MrdistillError
from mrdistill.train.checkpoint import CHECKPOINT_DIR, load_checkpoint, state_to_cpu
from mrdistill.train.logging import RunLog

STATE_VERSION = 1
RESUME_KEY = "resume"


@dataclass
class FitResult:
    """What one `fit` call (stage) achieved. `best_epoch` is the epoch kept (1-based), `best_value`
    its score under `select`: the validation metric ("val_metric", "last") or the validation
    objective ("val_objective"); `steps` the stage's training steps."""

    best_epoch: int
    best_value: float
    select: str = "val_metric"
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0


@dataclass
class StagePosition:
    """The counters of one stage; plain numbers and lists so a checkpoint stores them as they are."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches consumed in the unfinished epoch (0 at an epoch boundary)
    step: int = 0  # batches consumed in the stage (non-finite skipped ones included)
    good: int = 0  # finite steps of the unfinished epoch: the denominator of its mean losses
    sums: dict[str, float] = field(default_factory=dict)  # loss sums of the unfinished epoch
    skipped: int = 0  # non-finite steps skipped in the stage (`optim.skip_nonfinite`)
    epoch_skipped: int = 0  # ... in the unfinished epoch (logged)
    best_epoch: int = -1
    best_value: float = math.nan
    best_score: float = -math.inf  # `train.selection.selection_score` of the kept epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    loader_rng: torch.Tensor | None = None  # data-order generator at the start of the unfinished epoch

    def result(self, select: str) -> FitResult:
        return FitResult(self.best_epoch, self.best_value, select, list(self.history), self.step)


def collect_hooks(objective: nn.Module) -> dict[str, Any]:
    """`resume_state()` of every module inside `objective` that defines it, by module name."""
    return {name: m.resume_state() for name, m in objective.named_modules()
            if callable(getattr(m, "resume_state", None))}


def apply_hooks(objective: nn.Module, states: dict[str, Any]) -> None:
    """Give each module its saved `resume_state` back (the inverse of `collect_hooks`)."""
    modules = dict(objective.named_modules())
    for name, state in states.items():
        if name not in modules or not callable(getattr(modules[name], "load_resume_state", None)):
            raise MrdistillError(f"checkpoint has resume state for {name or 'the objective'!r}, "
                                 f"which this run's objective does not have")
        modules[name].load_resume_state(state)


class RunState:
    """One run across its stages: the log, finished stages, modules carried between stages, and
    the checkpoint an interrupted run resumes from (None for a fresh run)."""

    def __init__(self, run_dir: Path, log: RunLog | None = None,
                 checkpoint: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / CHECKPOINT_DIR
        self.log = log or RunLog(self.run_dir)
        self.checkpoint = checkpoint
        section = checkpoint[RESUME_KEY] if checkpoint is not None else None
        self.completed: list[FitResult] = [FitResult(**c) for c in section["completed"]] if section else []
        self.carried: dict[str, nn.Module] = {}
        self.last_good: str | None = None  # the last checkpoint written (or resumed from), in words
        rows = [r for c in self.completed for r in c.history]
        if section is not None:
            rows += section["position"]["history"]
            self.last_good = describe(self.ckpt_dir / "last.pt", section)
        self.log.reset(rows, self.step_offset + (section["position"]["step"] if section else 0))

    @classmethod
    def open(cls, run_dir: Path, resume: bool = False, tensorboard: bool = False) -> "RunState":
        """The state of a run starting in `run_dir`: from `checkpoints/last.pt` when `resume` and it
        exists (else from scratch). (Temporary files left by a killed checkpoint write were removed
        when the folder was claimed: `rundir.open_output`.)"""
        run_dir = Path(run_dir)
        last = run_dir / CHECKPOINT_DIR / "last.pt"
        checkpoint = None
        if resume and last.is_file():
            checkpoint = load_checkpoint(last)
            section = checkpoint.get(RESUME_KEY)
            if not isinstance(section, dict) or section.get("version") != STATE_VERSION:
                raise MrdistillError(f"{last} holds no resume state of this mrdistill version; "
                                     f"start again with --overwrite")
        return cls(run_dir, RunLog(run_dir, tensorboard), checkpoint)

    @property
    def stage_index(self) -> int:
        """The position of the stage now running (or about to) in the run."""
        return len(self.completed)

    @property
    def step_offset(self) -> int:
        """Steps of the finished stages: the run-wide step at which the current stage starts."""
        return sum(c.steps for c in self.completed)

    def completed_fit(self, index: int) -> FitResult | None:
        """The result of stage `index` when it finished before the checkpoint resumed from."""
        return self.completed[index] if index < len(self.completed) else None

    def carry(self, name: str, module: nn.Module) -> nn.Module:
        """Keep `module` (trained by a stage, used by later ones) in every later checkpoint; a
        resumed run loads its saved weights into it. Returns `module`."""
        self.carried[name] = module
        section = self.checkpoint[RESUME_KEY] if self.checkpoint is not None else None
        if section is not None and name in section["carried"]:
            module.load_state_dict(section["carried"][name])
        return module

    def begin(self, stage: str) -> dict[str, Any] | None:
        """Start stage `stage`; returns the checkpoint (payload with its resume section) when the
        run resumes inside this stage, else None."""
        if self.checkpoint is None:
            return None
        section = self.checkpoint[RESUME_KEY]
        if section["stage_index"] != self.stage_index:
            return None
        if section["stage"] != stage:
            raise MrdistillError(f"the checkpoint was written in stage {section['stage']!r} but the "
                                 f"run's stage {self.stage_index + 1} is {stage!r}; the config changed")
        checkpoint, self.checkpoint = self.checkpoint, None  # consumed: later stages start fresh
        return checkpoint

    def end(self, result: FitResult) -> None:
        self.completed.append(result)

    def section(self, stage: str, position: StagePosition, best_model: dict[str, torch.Tensor] | None,
                optimizer: torch.optim.Optimizer, scheduler: Any, objective: nn.Module,
                scaler: dict[str, Any] | None = None) -> dict[str, Any]:
        """The resume section of a checkpoint written now."""
        pos = asdict(position)
        return {
            "version": STATE_VERSION, "stage_index": self.stage_index, "stage": stage,
            "position": pos, "best_model": best_model,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler or {},
            "objective": collect_hooks(objective),
            "completed": [asdict(c) for c in self.completed],
            "carried": {k: state_to_cpu(m.state_dict()) for k, m in self.carried.items()},
        }


def describe(path: Path, section: dict[str, Any]) -> str:
    """`path (stage2, epoch 3, step 40)`: a checkpoint in words, for messages."""
    pos = section["position"]
    return f"{path} ({section['stage']}, epoch {pos['epoch']}, step {pos['step']})"


def position_from(section: dict[str, Any]) -> StagePosition:
    return StagePosition(**section["position"])


def run_progress(run_dir: Path, stage_epochs: list[int]) -> str | None:
    """None when the run in `run_dir` finished (its test report, `metrics.json`, is written last);
    else how far it got, from `last.pt`: "incomplete: epoch 4 of 12" (one stage), "incomplete:
    stage 2 of 3, epoch 1 of 5" (`stage_epochs`: the planned epochs of each stage), or
    "incomplete: no epoch finished". A killed run, or one still training, reads so."""
    if (run_dir / "metrics.json").is_file():
        return None
    last = run_dir / CHECKPOINT_DIR / "last.pt"
    section = load_checkpoint(last).get(RESUME_KEY) if last.is_file() else None
    if not isinstance(section, dict):
        return "incomplete: no epoch finished"
    index = int(section.get("stage_index", 0))
    epoch = int((section.get("position") or {}).get("epoch", 0))
    planned = stage_epochs[index] if index < len(stage_epochs) else None
    text = f"epoch {epoch}" + (f" of {planned}" if planned else "")
    if len(stage_epochs) > 1:
        text = f"stage {index + 1} of {len(stage_epochs)}, {text}"
    return f"incomplete: {text}"
