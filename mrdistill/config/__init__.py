"""Typed configs: the one place where defaults live.

A run is described by `RunConfig`; YAML files are read with `yaml.safe_load`, unknown keys are errors
that name the valid ones, and `--set a.b=value` overrides are applied on top (values parsed as YAML).

`data.py` holds the data and mask configs, `run.py` the model, optimiser, distillation and run
configs, `parse.py` the YAML/override machinery. Everything is re-exported here.
"""

from mrdistill.config.data import (DataConfig, FastMRIConfig, MaskConfig, PredictConfig,
                                   PrepareConfig, SuperResConfig)
from mrdistill.config.parse import (apply_overrides, from_dict, load_run_config, load_yaml,
                                    save_config, to_dict)
from mrdistill.config.run import (AdaptiveConfig, DistillConfig, KDTermConfig, LoggingConfig,
                                  ModelConfig, OptimConfig, RunConfig, SelfSupConfig, SFTConfig, StageConfig,
                                  TeacherCorrectionConfig)

__all__ = [
    "AdaptiveConfig", "DataConfig", "DistillConfig", "FastMRIConfig", "KDTermConfig",
    "LoggingConfig", "MaskConfig",
    "ModelConfig", "OptimConfig", "PredictConfig", "PrepareConfig", "RunConfig", "SFTConfig",
    "SelfSupConfig", "StageConfig", "SuperResConfig", "TeacherCorrectionConfig", "apply_overrides",
    "from_dict", "load_run_config", "load_yaml", "save_config", "to_dict",
]
