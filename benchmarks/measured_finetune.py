"""Fine-tuning on measured k-space with whole contrasts held out (issue 25, item 4).

Used by `benchmarks/measured_models.py --finetune-epochs N`: the teacher, plain and distilled
students trained on the embedded corpus each continue (`RunConfig.init`) on the measured data set
of `prepare --from measured` (`data.dataset: measured`: pyqmri's flip angles split by
`data.measured`, by default 1-3 and 5-8 to train, 4 to validate, 0 and 9 and the twix phantom to
test, so no test contrast is ever trained on), all with the same optimizer steps at 4x:

- teacher and plain student: the task loss only (L1 to the fully sampled target);
- distilled student: the task loss plus imitation of the fine-tuned teacher (the recipe of the
  embedded training, `demo.SITE_STAGES`), from the distilled student's weights.

With `--finetune-labeled N` the students fine-tune in the site setting of section 1 of
docs/results.md: the teacher as above (every training contrast fully sampled: its larger
collection), the plain student on N of the training contrasts (evenly spaced; `data.labeled_train_slices`)
for the teacher's optimizer steps, the distilled student on the same N with their targets plus
the other contrasts undersampled only (imitation of the teacher alone there), for the same steps.
`--reuse` takes finished runs of the same config (the embedded models, the teacher's fine-tuning)
from `--runs` instead of training them again.

The fine-tuned checkpoints are then scored like the others; their rows carry " (fine-tuned)" and
only the held-out contrasts say anything about them.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

from torch import nn

from mrdistill.config import RunConfig, from_dict
from mrdistill.config.data import MeasuredConfig
from mrdistill.data.build import make_datasets
from mrdistill.demo import SITE_STAGES
from mrdistill.train.budget import matched_budget
from mrdistill.train.runs import config_difference, distill_run, train_run

SUFFIX = " (fine-tuned)"
HELD_OUT = tuple(MeasuredConfig().test)  # pyqmri flip angles that no fine-tuning trains on


def measured_data(folder: Path, coil_mode: str, coil_maps: str, center_fraction: float) -> dict:
    """The measured training data at 4x with fresh random masks each epoch, coils as the model
    takes them (`multi`: all coils and maps; `combine`: the coil combination)."""
    return {"dataset": "measured", "path": str(folder), "mode": "complex", "coil_maps": coil_maps,
            "fastmri": {"coil_mode": coil_mode},
            "mask": {"kind": "random", "acceleration": 4.0, "center_fraction": center_fraction,
                     "fresh_train_masks": True}}


def run_once(run, cfg: RunConfig, reuse: bool, **kwargs) -> tuple[Path, nn.Module | None, float | None]:
    """(best checkpoint, model, seconds) of `run` (train_run or distill_run) on `cfg`; with `reuse`,
    a finished run of the same config in its folder (metrics.json written) is taken as it is:
    model and seconds None (a distilled run then loads its teacher from the path)."""
    best = cfg.run_dir / "checkpoints" / "best.pt"
    if reuse and best.is_file() and (cfg.run_dir / "metrics.json").is_file():
        key = config_difference(cfg, cfg.run_dir / "config.yaml")
        if key is not None:
            raise SystemExit(f"--reuse: {cfg.run_dir} holds a finished run whose config differs at "
                             f"{key!r}; give another --runs folder, or leave out --reuse to train it again")
        return best, None, None
    t = time.perf_counter()
    result = run(cfg, overwrite=True, **kwargs)
    return best, result.model, round(time.perf_counter() - t, 1)


def finetune_seed(trained: dict, seed: int, runs: Path, data: dict, epochs: int, batch: int,
                  labeled: int | None = None, reuse: bool = False) -> dict:
    """Fine-tune one seed's teacher, student and distilled student -> {name + SUFFIX: checkpoint,
    "runs": facts}. trained: measured_models.train_seed's result (checkpoints by name, "runs").

    `labeled`: the students' site setting: the teacher fine-tunes on every training contrast (its
    larger collection), the plain student on `labeled` of them (`data.labeled_train_slices`) for
    the teacher's optimizer steps, the distilled student on the same `labeled` with their targets
    plus the rest undersampled-only (imitation alone), for the same steps (`matched_budget`)."""
    common = {"out_dir": str(runs), "seed": seed, "device": "cpu", "progress": False, "data": data}
    optim = {"epochs": epochs, "batch_size": batch, "step_size": max(1, epochs * 2 // 3), "gamma": 0.3,
             "channels_last": False}
    sets = make_datasets(from_dict(RunConfig, common, "finetune").data, seed)
    tag, student_data, student_sets, student_optim = "", data, sets, optim
    stages, distill_optim = [{**st, "epochs": epochs} for st in copy.deepcopy(SITE_STAGES)], optim
    if labeled is not None:
        tag, student_data = f"-{labeled}labeled", {**data, "labeled_train_slices": labeled}
        student_sets = make_datasets(from_dict(RunConfig, {**common, "data": student_data}, "finetune").data, seed)
        steps = epochs * math.ceil(len(sets["train"]) / batch)
        student_epochs = math.ceil(steps / math.ceil(len(student_sets["train"]) / batch))
        student_optim = {**optim, "epochs": student_epochs, "step_size": max(1, student_epochs * 2 // 3)}
        # the distilled student's epochs are longer (the undersampled-only contrasts too): same steps
        seen = len(student_sets["train"]) + len(student_sets["unlabeled"])
        stages, distill_optim = matched_budget([{**st, "epochs": 1} for st in copy.deepcopy(SITE_STAGES)],
                                               student_optim, len(student_sets["train"]), seen)
    plan = {"teacher": (train_run, "", data, optim, sets, {}),
            "student": (train_run, tag, student_data, student_optim, student_sets, {}),
            "distilled": (distill_run, tag, student_data, distill_optim, student_sets, {"stages": stages})}
    out: dict = {"runs": {}}
    teacher = None
    for name, (run, suffix, run_data, run_optim, run_sets, extra) in plan.items():
        raw = {**common, "name": f"seed{seed}-{name}-ft{suffix}", "data": run_data,
               "model": trained["runs"][name]["model"], "init": str(trained[name]), "optim": run_optim}
        kwargs = {"datasets": run_sets}
        if run is distill_run:
            raw["distill"] = {"teacher": str(out["teacher" + SUFFIX]), "stages": stages}
            kwargs["teacher"] = teacher
        best, model, seconds = run_once(run, from_dict(RunConfig, raw, name), reuse, **kwargs)
        teacher = model if name == "teacher" else teacher
        out[name + SUFFIX] = best
        out["runs"][name + SUFFIX] = {"seconds": seconds, "optim": run_optim,
                                      **extra, "init": str(trained[name]),
                                      "train_slices": len(run_sets["train"]),
                                      "undersampled_only_slices": len(run_sets.get("unlabeled", []))
                                      if run is distill_run else 0}
    return out
