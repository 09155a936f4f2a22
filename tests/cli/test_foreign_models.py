"""One teacher description everywhere: `predict`, `evaluate` and `benchmark` take a foreign model
(--model NAME --set KEY=VALUE --weights FILE --format fastmri|mrdistill) exactly as
`distill.teacher` does, loaded by the one loader (`train.teachers.load_foreign_teacher`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import write_fastmri_folder  # noqa: E402

from mrdistill.config import DataConfig, MaskConfig  # noqa: E402
from mrdistill.models import build_model  # noqa: E402
from mrdistill.train.checkpoint import data_meta, model_payload, save_checkpoint  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

KWARGS = {"cascades": 1, "convs": 2, "channels": 4, "in_channels": 2}
SETS = [arg for k, v in KWARGS.items() for arg in ("--set", f"{k}={v}")]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """fastMRI files, an mrdistill checkpoint and the same weights as a plain state_dict and as a
    Lightning checkpoint (its module attribute in front of every key)."""
    monkeypatch.setenv("MRDISTILL_CACHE_DIR", str(tmp_path / "cache"))
    val = write_fastmri_folder(tmp_path / "singlecoil_val", 2, slices=2)
    model = build_model("dccnn", seed=0, **KWARGS)
    ckpt = tmp_path / "run.pt"
    meta = data_meta(DataConfig(mode="complex", mask=MaskConfig(kind="random")))
    save_checkpoint(ckpt, model_payload(model, "dccnn", KWARGS, **meta))
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
               tmp_path / "lightning.ckpt")
    return val, ckpt


def _recons(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path) as f:
            out[path.name] = f["reconstruction"][()]
    return out


def test_predict_with_foreign_weights_equals_the_checkpoint(tmp_path, capsys, files):
    val, ckpt = files
    base = ["predict", val, "--mask", "random", "--no-progress", "--out"]
    assert run_cli([*base, tmp_path / "ckpt", "--checkpoint", ckpt], capsys)[0] == 0
    reference = _recons(tmp_path / "ckpt")
    assert len(reference) == 2
    for name, fmt in (("plain.pt", "fastmri"), ("lightning.ckpt", "fastmri")):
        code, _, err = run_cli([*base, tmp_path / f"out_{fmt}_{name}", "--model", "dccnn", *SETS,
                                "--weights", tmp_path / name, "--format", fmt], capsys)
        assert code == 0, err
        got = _recons(tmp_path / f"out_{fmt}_{name}")
        assert got.keys() == reference.keys()
        assert all(np.array_equal(got[k], reference[k]) for k in got)
    # an mrdistill checkpoint as foreign weights (format mrdistill, its own model)
    code, _, err = run_cli([*base, tmp_path / "own", "--weights", ckpt, "--format", "mrdistill"], capsys)
    assert code == 0, err
    assert all(np.array_equal(a, b) for a, b in zip(_recons(tmp_path / "own").values(), reference.values()))


def test_predict_refuses_weights_that_do_not_fit_in_one_line(tmp_path, capsys, files):
    val, _ = files
    code, out, err = run_cli(["predict", val, "--out", tmp_path / "p", "--model", "dccnn", *SETS,
                              "--set", "channels=8", "--weights", tmp_path / "plain.pt"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "plain.pt" in lines[0] and "check --set" in lines[0]
    assert not (tmp_path / "p").exists()
    for args, message in (([*SETS], "--set gives arguments of a foreign model"),
                          (["--model", "dccnn"], "give its weights with --weights"),
                          (["--weights", tmp_path / "plain.pt"], "name the model the weights belong to"),
                          (["--checkpoint", tmp_path / "run.pt", "--model", "dccnn", "--weights",
                            tmp_path / "plain.pt"], "not both")):
        code, _, err = run_cli(["predict", val, "--out", tmp_path / "p", *args], capsys)
        assert code == 2 and message in err and not (tmp_path / "p").exists()


def test_benchmark_measures_a_foreign_model(tmp_path, capsys, files):
    tiny = ["--shape", "16", "16", "--batch", "1", "--repeats", "1", "--matmul-size", "64",
            "--backends", "eager", "--no-progress"]
    code, _, err = run_cli(["benchmark", "--model", "dccnn", *SETS, "--weights", tmp_path / "lightning.ckpt",
                            "--format", "fastmri", "--model", "dccnn", *SETS, "--out", tmp_path / "b", *tiny],
                           capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert list(report["models"])[0] == "dccnn (lightning.ckpt)"
    code, _, err = run_cli(["benchmark", "--model", "dccnn", *SETS, "--set", "convs=3", "--weights",
                            tmp_path / "plain.pt", "--out", tmp_path / "b2", *tiny], capsys)
    assert code == 2 and "plain.pt" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b2").exists()
    code, _, err = run_cli(["benchmark", "--weights", tmp_path / "plain.pt", "--out", tmp_path / "b3", *tiny],
                           capsys)
    assert code == 2 and "--weights must follow a --model" in err
