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
class StageConfig:
    """One distillation stage: `task_weight * L1(student, target) + sum(weight * kd)`."""

    epochs: int = 10
    task_weight: float = 1.0
    lr: float | None = None  # None: optim.lr
    kd: list[KDTermConfig] = field(default_factory=list)


@dataclass
class DistillConfig:
    """Distil the teacher checkpoint into the model of `RunConfig.model`, stage by stage."""

    teacher: str = ""
    init: str | None = None  # optional student checkpoint to start from
    stages: list[StageConfig] = field(default_factory=list)


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
                    base: dict[str, Any] | None = None) -> RunConfig:
    """YAML file (optional) on top of `base`, then `--set` overrides -> validated `RunConfig`."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = _deep_merge(data, load_yaml(path))
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
