"""Typed configs: the one place where defaults live.

A run is described by `RunConfig`; YAML files are read with `yaml.safe_load`, unknown keys are errors
that name the valid ones, and `--set a.b=value` overrides are applied on top (values parsed as YAML).

`data.py` holds the data and mask configs, `run.py` the model, optimiser, distillation and run
configs, `parse.py` the YAML/override machinery, `checks.py` the value checks. Everything is
re-exported here.

Every value is checked where it is parsed. A new field declares its range next to its default:

    lr: float = checked(1e-3, POSITIVE)              # "optim.lr: expected a finite number > 0, got -1"
    kind: str = checked("step", one_of("step", "cosine"))
    sizes: list[int] = checked(factory=lambda: [1, 2], check=each(COUNT, length=2))

`from_dict` converts the value to the field's type (bool is not an int; `3e5` fills an int field;
null only where the type says `| None`), then runs the check and names the full key on failure.
Ready checks: COUNT, NON_NEGATIVE_INT, SEED, POSITIVE, NON_NEGATIVE, FINITE, FRACTION,
OPEN_FRACTION, ACCELERATION, NAME (one relative path component), RELATIVE_PATH; build others with
`number(gt=, ge=, lt=, le=)`, `integer(ge=, le=)`, `one_of(...)`, `each(check, length=)` or
`Check(expected, ok)`. Configs built in code (CLI options) are checked with `check_fields`.
YAML is read by `parse_yaml` (safe, and `1e-4` is a number), for files and `--set` values alike.
"""

from mrdistill.config.data import (AugmentConfig, DataConfig, FastMRIConfig, MaskConfig, MeasuredConfig,
                                   PredictConfig, PrepareConfig, SuperResConfig)
from mrdistill.config.checks import Check, check_fields, checked
from mrdistill.config.parse import (apply_overrides, deep_merge, from_dict, load_run_config, load_yaml,
                                    parse_yaml, save_config, to_dict)
from mrdistill.config.run import (AdaptiveConfig, DistillConfig, KDTermConfig, LoggingConfig,
                                  ModelConfig,
                                  OptimConfig, RunConfig, SelfSupConfig, SFTConfig, StageConfig,
                                  TeacherConfig, TeacherCorrectionConfig)

__all__ = [
    "AdaptiveConfig", "AugmentConfig", "Check", "DataConfig", "DistillConfig", "FastMRIConfig", "KDTermConfig", "LoggingConfig",
    "MaskConfig",
    "MeasuredConfig", "ModelConfig", "OptimConfig", "PredictConfig", "PrepareConfig", "RunConfig", "SFTConfig",
    "SelfSupConfig", "StageConfig", "SuperResConfig", "TeacherConfig", "TeacherCorrectionConfig",
    "apply_overrides", "deep_merge",
    "check_fields", "checked", "from_dict", "load_run_config", "load_yaml", "parse_yaml", "save_config", "to_dict",
]
