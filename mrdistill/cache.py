"""Where mrdistill keeps files it can rebuild (metadata indexes, compiled kernels)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`$MRDISTILL_CACHE_DIR`, else `$XDG_CACHE_HOME/mrdistill`, else `~/.cache/mrdistill`."""
    if os.environ.get("MRDISTILL_CACHE_DIR"):
        return Path(os.environ["MRDISTILL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mrdistill"
