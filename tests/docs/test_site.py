"""The documentation site (mkdocs + mkdocs-material + mkdocstrings, the `docs` extra) builds with
--strict: a broken link, a missing page or an API entry that does not resolve fails `make test`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--site-dir", str(tmp_path / "site")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "models" / "index.html").is_file()
    page = (tmp_path / "site" / "api" / "distill" / "index.html").read_text()
    assert "Zagoruyko" in page and "build_kd" in page
