"""`mrdistill prepare --from measured` in-process: the cache it fills, and bad archives."""

from __future__ import annotations

import numpy as np
import pytest

from mrdistill.cli.main import main
from mrdistill.data import measured
from mrdistill.data.measured_convert import TwixReadout
from tests.data.measured_fixtures import install_stand_ins


def _cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_from_measured_fills_the_cache(tmp_path, capsys, monkeypatch):
    cache = install_stand_ins(tmp_path, monkeypatch)
    monkeypatch.setenv("MRDISTILL_CACHE_DIR", str(cache))
    code, out, err = _cli(["prepare", "--from", "measured", "--no-progress"], capsys)
    assert code == 0 and err == ""
    assert "pyqmri_vfa.h5: k-space (10, 3, 24, 20)" in out and "twix_gre.h5: k-space (1, 2, 20, 16)" in out
    assert (cache / "measured" / "measured.json").is_file()
    code, out, err = _cli(["prepare", "--from", "measured", "--out", tmp_path / "elsewhere", "--no-progress"], capsys)
    assert code == 0 and (tmp_path / "elsewhere" / "pyqmri_vfa.h5").is_file()


@pytest.mark.parametrize("bad", ["substituted archive", "no image data", "zero coils", "truncated twix"])
def test_bad_input_is_one_line_exit_2_and_no_cache_entry(tmp_path, capsys, monkeypatch, bad):
    twix = {"no image data": {"readouts": [], "noise": np.ones((2, 40), np.complex64)},
            "zero coils": {"readouts": [TwixReadout(0, 0, np.zeros((0, 40), np.complex64))]},
            "truncated twix": {"truncate": 20000}}.get(bad, {})
    cache = install_stand_ins(tmp_path, monkeypatch, **twix)
    monkeypatch.setenv("MRDISTILL_CACHE_DIR", str(cache))
    spec = measured.ARCHIVES["pyqmri"]
    if bad == "substituted archive":
        (cache / "measured-archives" / spec.filename).write_bytes(b"substituted")
    expected = {"substituted archive": [spec.filename, "substituted archive"],
                "no image data": ["gre.dat: no image data"],
                "zero coils": ["gre.dat: k-space must have at least one coil"],
                "truncated twix": ["gre.dat: truncated twix file (20000 bytes"]}[bad]
    code, out, err = _cli(["prepare", "--from", "measured", "--no-progress"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert all(e in err for e in expected), err
    assert "WARNING" not in out  # twixtools prints its warnings on stdout
    assert not (cache / "measured").exists()
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]


def test_inputs_and_from_measured_are_exclusive(tmp_path, capsys):
    code, _, err = _cli(["prepare", tmp_path, "--from", "measured"], capsys)
    assert code == 2 and "either input files or --from measured" in err
    code, _, err = _cli(["prepare", tmp_path], capsys)
    assert code == 2 and "needs input files or folders and --out" in err
