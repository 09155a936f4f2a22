"""Value checks for config fields: each field may carry one `Check` in its metadata.

A field is declared with `checked(default, CHECK)` (or `checked(factory=..., check=CHECK)`) instead
of a plain default; `parse.from_dict` runs the check after the type conversion, so a bad value is
refused where it is parsed with the full key and the valid range:
`optim.lr: expected a finite number > 0, got -1`. `check_fields` runs the same checks on a config
built in code (CLI options turned into a `PredictConfig`, for example). `None` is never passed to a
check: whether a field may be null follows from its type (`int | None`).
"""

from __future__ import annotations

import math
import os
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from mrdistill.errors import MrdistillError

# torch.manual_seed and numpy's Generator take any integer up to 2**64 - 1; 2**63 - 1 (int64) is
# the limit every consumer (torch generators, seeds stored in int64 tensors) shares.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Check:
    """`expected` completes "expected ..." in the error; `ok(value)` says whether `value` passes."""

    expected: str
    ok: Callable[[Any], bool]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(*, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None) -> Check:
    """A finite number within the given bounds, e.g. `number(gt=0)`."""
    bounds = [(op, b) for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None]
    tests = {">": lambda v, b: v > b, ">=": lambda v, b: v >= b,
             "<": lambda v, b: v < b, "<=": lambda v, b: v <= b}
    text = " and ".join(f"{op} {b:g}" for op, b in bounds)
    return Check(f"a finite number {text}".rstrip(),
                 lambda v: _finite(v) and all(tests[op](v, b) for op, b in bounds))


def integer(*, ge: int | None = None, le: int | None = None) -> Check:
    """An integer (not a bool) in [ge, le]."""
    if ge is not None and le is not None:
        text = f"an integer in [{ge}, {le}]" if le != MAX_SEED else f"an integer in [{ge}, 2**63 - 1]"
    else:
        text = "an integer" + (f" >= {ge}" if ge is not None else "") + (f" <= {le}" if le is not None else "")
    return Check(text, lambda v: isinstance(v, int) and not isinstance(v, bool)
                 and (ge is None or v >= ge) and (le is None or v <= le))


def one_of(*choices: Any) -> Check:
    """One of `choices`."""
    return Check("one of " + ", ".join(repr(c) for c in choices), lambda v: v in choices)


def each(check: Check, *, length: int | None = None, min_length: int = 0) -> Check:
    """A list whose every item passes `check` (with exactly `length` or at least `min_length` items)."""
    size = (f"a list of {length} items" if length is not None else "a non-empty list" if min_length == 1
            else f"a list of at least {min_length} items" if min_length else "a list")
    return Check(f"{size}, each {check.expected}",
                 lambda v: isinstance(v, list) and (len(v) == length if length is not None
                                                    else len(v) >= min_length)
                 and all(check.ok(x) for x in v))


def _is_name(value: Any) -> bool:
    if not isinstance(value, str) or value in ("", ".", "..") or value != value.strip():
        return False
    return ("/" not in value and "\\" not in value and "\0" not in value
            and not PureWindowsPath(value).drive and len(PurePosixPath(value).parts) == 1)


def _is_relative_path(value: Any) -> bool:
    if not isinstance(value, str) or not value or "\0" in value or os.path.isabs(value):
        return False
    return all(part not in ("", "..") for part in PurePosixPath(value).parts)


# Upper bounds of every count, far above any real run and low enough that a slip (an extra zero
# run, 10**40) is refused where it is parsed instead of running for ever or allocating the machine
# away. README.md ("Limits") lists them.
MAX_COUNT = 1_000_000  # any other count (COUNT)
MAX_EPOCHS = 100_000
MAX_STEPS = 1_000_000_000  # optimizer steps (fastMRI knee: ~35k slices x 50 epochs = 1.75 M at batch 1)
MAX_BATCH = 65_536
MAX_SIDE = 8192  # image side in pixels
MAX_COILS = 128
MAX_SLICES = 100_000_000
MAX_WORKERS = 1024
MAX_MODEL_INT = 10_000  # any whole-number model argument (channels, cascades, depth, ...)

COUNT = integer(ge=1, le=MAX_COUNT)  # a count without a bound of its own below
NON_NEGATIVE_INT = integer(ge=0, le=MAX_COUNT)
EPOCHS = integer(ge=1, le=MAX_EPOCHS)
EPOCHS_OR_NONE = integer(ge=0, le=MAX_EPOCHS)  # patience, warm-up epochs
STEPS = integer(ge=1, le=MAX_STEPS)
BATCH = integer(ge=1, le=MAX_BATCH)
SIDE = integer(ge=1, le=MAX_SIDE)
LINES = integer(ge=0, le=MAX_SIDE)  # k-space lines or pixels of a side
COILS = integer(ge=1, le=MAX_COILS)
SLICES = integer(ge=1, le=MAX_SLICES)
WORKERS = integer(ge=0, le=MAX_WORKERS)
MODEL_INT = integer(ge=1, le=MAX_MODEL_INT)
SEED = integer(ge=0, le=MAX_SEED)
POSITIVE = number(gt=0)  # learning rates, scales
NON_NEGATIVE = number(ge=0)  # weights, clipping, weight decay, noise
FINITE = number()
FRACTION = number(ge=0, le=1)
OPEN_FRACTION = number(gt=0, lt=1)
ACCELERATION = number(gt=1)
NAME = Check("a simple relative name (one path component: no '/', '..', empty or absolute)", _is_name)
RELATIVE_PATH = Check("a relative folder path without '..'", _is_relative_path)


def checked(default: Any = MISSING, check: Check | None = None, *,
            factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A dataclass field with a default (or default `factory`) and the `check` its values must pass."""
    return field(default=default, default_factory=factory, metadata={"check": check})


# Messages show at most this many characters of a value: a value may be huge (a long list, a YAML
# alias expanded a million times), and rendering all of it could exhaust the memory.
SHOWN_CHARS = 200
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 6
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 120, 80, 80


def show(value: Any) -> str:
    """A value as the user wrote it (YAML spelling for null and booleans), at most `SHOWN_CHARS`
    characters (long strings, lists and mappings are cut with "...")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


def fail(where: str, expected: str, value: Any) -> MrdistillError:
    """The one error format: `optim.lr: expected a finite number > 0, got -1`."""
    return MrdistillError(f"{where}: expected {expected}, got {show(value)}")


def check_value(check: Check | None, value: Any, where: str) -> None:
    """Raise `fail(...)` unless `value` (not None) passes `check`."""
    if check is not None and value is not None and not check.ok(value):
        raise fail(where, check.expected, value)


def field_check(f: Field[Any]) -> Check | None:
    """The check attached to a dataclass field, if any."""
    return f.metadata.get("check")


def check_fields(cfg: Any, where: str = "", rename: Mapping[str, str] | None = None) -> None:
    """Run every field check of dataclass `cfg` (recursively). Keys are `where.field`; `rename`
    maps dotted field paths to the names the user typed (e.g. {"batch_size": "--batch-size"})."""
    rename = rename or {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        path = f"{where}.{f.name}" if where else f.name
        if is_dataclass(value):
            check_fields(value, path, {k[len(f.name) + 1:]: v for k, v in rename.items()
                                       if k.startswith(f.name + ".")})
            continue
        check_value(field_check(f), value, rename.get(f.name, path))
