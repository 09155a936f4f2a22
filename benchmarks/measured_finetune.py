"""Fine-tuning on measured k-space with whole contrasts held out (issue 25, item 4).

Used by `benchmarks/measured_models.py --finetune-epochs N`: the teacher, plain and distilled
students trained on the embedded corpus each continue (`RunConfig.init`) on the measured data set
of `prepare --from measured` (`data.dataset: measured`: pyqmri's flip angles split by
`data.measured`, by default 1-3 and 5-8 to train, 4 to validate, 0 and 9 and the twix phantom to
test, so no test contrast is ever trained on), all with the same optimizer steps at 4x:

- teacher and plain student: the task loss only (L1 to the fully sampled target);
- distilled student: the task loss plus imitation of the fine-tuned teacher (the recipe of the
  embedded training, `demo.SITE_STAGES`), from the distilled student's weights.

The fine-tuned checkpoints are then scored like the others; their rows carry " (fine-tuned)" and
only the held-out contrasts say anything about them.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from mrdistill.config import RunConfig, from_dict
from mrdistill.config.data import MeasuredConfig
from mrdistill.data.build import make_datasets
from mrdistill.demo import SITE_STAGES
from mrdistill.train.runs import distill_run, train_run

SUFFIX = " (fine-tuned)"
HELD_OUT = tuple(MeasuredConfig().test)  # pyqmri flip angles that no fine-tuning trains on


def measured_data(folder: Path, coil_mode: str, coil_maps: str, center_fraction: float) -> dict:
    """The measured training data at 4x with fresh random masks each epoch, coils as the model
    takes them (`multi`: all coils and maps; `combine`: the coil combination)."""
    return {"dataset": "measured", "path": str(folder), "mode": "complex", "coil_maps": coil_maps,
            "fastmri": {"coil_mode": coil_mode},
            "mask": {"kind": "random", "acceleration": 4.0, "center_fraction": center_fraction,
                     "fresh_train_masks": True}}


def finetune_seed(trained: dict, seed: int, runs: Path, data: dict, epochs: int, batch: int) -> dict:
    """Fine-tune one seed's teacher, student and distilled student -> {name + SUFFIX: checkpoint,
    "runs": facts}. trained: measured_models.train_seed's result (checkpoints by name, "runs")."""
    common = {"out_dir": str(runs), "seed": seed, "device": "cpu", "progress": False, "data": data}
    optim = {"epochs": epochs, "batch_size": batch, "step_size": max(1, epochs * 2 // 3), "gamma": 0.3,
             "channels_last": False}
    sets = make_datasets(from_dict(RunConfig, common, "finetune").data, seed)
    out: dict = {"runs": {}}
    teacher = None
    for name in ("teacher", "student"):
        raw = {**common, "name": f"seed{seed}-{name}-ft", "model": trained["runs"][name]["model"],
               "init": str(trained[name]), "optim": optim}
        t = time.perf_counter()
        result = train_run(from_dict(RunConfig, raw, name), overwrite=True, datasets=sets)
        teacher = result.model if name == "teacher" else teacher
        out[name + SUFFIX] = result.run_dir / "checkpoints" / "best.pt"
        out["runs"][name + SUFFIX] = {"seconds": round(time.perf_counter() - t, 1), "optim": optim,
                                      "init": str(trained[name]), "train_slices": len(sets["train"])}
    stages = [{**st, "epochs": epochs} for st in copy.deepcopy(SITE_STAGES)]
    raw = {**common, "name": f"seed{seed}-distilled-ft", "model": trained["runs"]["distilled"]["model"],
           "init": str(trained["distilled"]), "optim": optim,
           "distill": {"teacher": str(out["teacher" + SUFFIX]), "stages": stages}}
    t = time.perf_counter()
    result = distill_run(from_dict(RunConfig, raw, "distilled"), overwrite=True, datasets=sets, teacher=teacher)
    out["distilled" + SUFFIX] = result.run_dir / "checkpoints" / "best.pt"
    out["runs"]["distilled" + SUFFIX] = {"seconds": round(time.perf_counter() - t, 1), "optim": optim,
                                         "stages": stages, "init": str(trained["distilled"]),
                                         "train_slices": len(sets["train"])}
    return out
