"""dict <-> dataclass: YAML files, presets and `--set` overrides become a checked `RunConfig`."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from mrdistill.atomic import atomic_write_text
from mrdistill.config.checks import check_value, fail, field_check, show
from mrdistill.config.run import RunConfig
from mrdistill.errors import MrdistillError


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that reads `1e-4` and `3e5` as numbers (YAML 1.1's float pattern demands a
    dot and a signed exponent, so PyYAML reads those as strings)."""


_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


# A config holds a few hundred values; aliases (`*name`) may repeat a value many times, and a
# "billion laughs" file nests them until the expanded config would fill the memory.
MAX_YAML_VALUES = 100_000


class YamlTooLarge(MrdistillError):
    """YAML whose aliases expand to more than `MAX_YAML_VALUES` values."""


def check_expanded_size(data: Any, limit: int = MAX_YAML_VALUES) -> None:
    """Count the values of `data` as every reader of it will see them (an alias counted each time
    it is used); raise `YamlTooLarge` past `limit`, without expanding anything."""
    stack, seen = [data], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            raise YamlTooLarge(f"the YAML expands to more than {limit:,} values (aliases repeated "
                               f"inside aliases?); a config needs far fewer")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def parse_yaml(text: str) -> Any:
    """YAML text -> Python values (safe; exponent numbers such as `1e-4` are floats); raises
    `YamlTooLarge` when its aliases expand to more than `MAX_YAML_VALUES` values."""
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    check_expanded_size(data)
    return data


def _allows_none(tp: Any) -> bool:
    return tp is Any or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                         and type(None) in typing.get_args(tp))


def _resolve_type(tp: Any) -> Any:
    """Strip `X | None` down to X (the dataclass or container type we must build)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _key(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a plain dict, converting and checking every value (`checks.py`).

    Unknown keys, wrong types and values out of range raise `MrdistillError` naming the full key
    (`where` is the prefix, e.g. "data.mask"; "" at the top level)."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise fail(where or "config", "a mapping", data)
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(by_name))
    if unknown:
        raise MrdistillError(f"{where or 'config'}: unknown key {show(unknown[0])}; "
                             f"valid: {', '.join(sorted(by_name))}")
    kwargs = {}
    for key, value in data.items():
        path = _key(where, key)
        if value is None and not _allows_none(hints[key]):
            raise fail(path, _describe(_resolve_type(hints[key])), value)
        kwargs[key] = _convert(_resolve_type(hints[key]), value, path)
        check_value(field_check(by_name[key]), kwargs[key], path)
    return cls(**kwargs)


def _describe(tp: Any) -> str:
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        return "a mapping"
    if typing.get_origin(tp) is list:
        return "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _convert(tp: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # e.g. `str | TeacherConfig`: a mapping builds it
        options = typing.get_args(tp)
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return from_dict(option, value, where)
        if not any(isinstance(value, o) for o in options if isinstance(o, type)):
            names = " or ".join("a mapping" if dataclasses.is_dataclass(o) else o.__name__
                                for o in options if o is not type(None))
            raise fail(where, names, value)
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise fail(where, "a list", value)
        return [_convert(_resolve_type(item_tp), v, _key(where, i)) for i, v in enumerate(value)]
    if origin is dict and not isinstance(value, dict):
        raise fail(where, "a mapping", value)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is float and number:
        return float(value)
    # `3e5` is read as a float; an int field takes it when it is a whole number.
    if tp is int and number and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise fail(where, _describe(tp), value)
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (for YAML and checkpoints)."""
    return dataclasses.asdict(cfg)


def _child(node: Any, part: str, key: str) -> Any:
    """`node[part]` for a mapping, or `node[int(part)]` for a list (`--set a.0.b=...`)."""
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise MrdistillError(f"--set {key}: {part!r} is not an index of a list of "
                                 f"{len(node)} (0..{len(node) - 1})")
        return node[int(part)]
    if node.get(part) is None:
        node[part] = {}
    return node[part]


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (value parsed as YAML) to a nested dict, in place; a number
    indexes a list (`distill.stages.0.epochs=1`)."""
    for item in overrides:
        if "=" not in item:
            raise MrdistillError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml(raw)
        except YamlTooLarge as exc:
            raise MrdistillError(f"--set {key.strip()}: {exc}") from None
        except yaml.YAMLError as exc:
            raise MrdistillError(f"--set {key.strip()}: not a valid YAML value ({yaml_problem(exc)}); "
                                 f"quote a string that starts with a special character") from None
        node: Any = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = _child(node, part, key)
            if not isinstance(node, (dict, list)):
                raise MrdistillError(f"--set {key}: {part!r} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            _child(node, last, key)  # the index must exist
            node[int(last)] = value
        else:
            node[last] = value
    return data


# optim settings that a distillation stage overrides with its own value when the stage sets one
STAGE_SHADOWS = ("epochs", "lr", "max_steps")


def check_shadowed(cfg: RunConfig, overrides: list[str]) -> None:
    """An `--set optim.X=...` that no distillation stage uses (every stage sets its own X) would
    be silently ignored: raise, naming the stage keys to set instead."""
    stages = cfg.distill.stages if cfg.distill is not None else []
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        name = key.removeprefix("optim.")
        if key != f"optim.{name}" or name not in STAGE_SHADOWS or not stages:
            continue
        if all(getattr(stage, name) is not None for stage in stages):
            keys = ", ".join(f"distill.stages.{k}.{name}" for k in range(len(stages)))
            raise MrdistillError(f"--set {key} has no effect: every distillation stage sets its "
                                 f"own {name} ({keys}); set those instead")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in words with its place: "expected ',' or ']', but got '<stream end>' at line
    2, column 1" (PyYAML's problem and mark, 1-based), else its first message line."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if not problem:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "unparsable text"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{context + ': ' if context else ''}{problem}{where}"


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; missing or malformed files raise `MrdistillError`."""
    path = Path(path)
    if path.is_dir():
        raise MrdistillError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise MrdistillError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MrdistillError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise MrdistillError(f"{path}: the config file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                             f"at offset {exc.start})") from None
    except yaml.YAMLError as exc:
        raise MrdistillError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    except YamlTooLarge as exc:
        raise MrdistillError(f"{path}: {exc}") from None
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
        data = deep_merge(data, load_yaml(path))
    presets = data.pop("presets", None) or {}
    if preset is not None:
        if preset not in presets:
            where = f"{path}" if path is not None else "the config"
            valid = ", ".join(sorted(presets)) or "(none defined)"
            raise MrdistillError(f"{where} has no preset {preset!r}; valid: {valid}")
        data = deep_merge(data, presets[preset])
    apply_overrides(data, overrides or [])
    cfg = from_dict(RunConfig, data)
    check_shadowed(cfg, overrides or [])
    return cfg


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`b` merged over `a`, mapping by mapping (a new dict; the inputs are not changed)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML next to the run."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
