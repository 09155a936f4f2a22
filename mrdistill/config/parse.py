"""dict <-> dataclass: YAML files, presets and `--set` overrides become a checked `RunConfig`."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from mrdistill.atomic import atomic_write_text
from mrdistill.config.run import RunConfig
from mrdistill.errors import MrdistillError



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
                    base: dict[str, Any] | None = None, preset: str | None = None) -> RunConfig:
    """YAML file (optional) on top of `base`, then the file's named preset, then `--set` overrides
    -> validated `RunConfig`.

    A config file may hold `presets: {name: {partial config}}`, e.g. a `smoke` preset that shrinks
    the run to seconds; `preset` picks one (unknown names are errors that list the file's presets).
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = _deep_merge(data, load_yaml(path))
    presets = data.pop("presets", None) or {}
    if preset is not None:
        if preset not in presets:
            where = f"{path}" if path is not None else "the config"
            valid = ", ".join(sorted(presets)) or "(none defined)"
            raise MrdistillError(f"{where} has no preset {preset!r}; valid: {valid}")
        data = _deep_merge(data, presets[preset])
    apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML next to the run."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
