"""Device resolution: auto/cpu/cuda/cuda:N, checked before anything is written."""

from __future__ import annotations

import pytest
import torch

from mrdistill.data import sources
from mrdistill.device import resolve_device
from mrdistill.errors import MrdistillError
from tests.conftest import run_cli

NO_CUDA = not torch.cuda.is_available()


def test_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(MrdistillError, match="unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")


@pytest.mark.skipif(not NO_CUDA, reason="checks the machine without CUDA")
@pytest.mark.parametrize("command", ["train", "distill", "demo"])
def test_cuda_without_cuda_is_one_line_and_leaves_no_folder(tmp_path, capsys, command):
    out = tmp_path / "runs"
    if command == "demo":
        args = ["demo", "--preset", "smoke", "--out", out / "demo"]
    else:
        config = "configs/kdmri_teacher.yaml" if command == "train" else "configs/kdmri_kd.yaml"
        args = [command, "--config", config, "--set", f"out_dir={out}"]
    code, _, err = run_cli([*args, "--device", "cuda:1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no CUDA device" in err
    assert not out.exists()


def test_missing_demo_extra_names_it(monkeypatch):
    def missing(package):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(sources.importlib.resources, "files", missing)
    with pytest.raises(MrdistillError, match=r"needs the nilearn package.*mrdistill\[demo\]"):
        sources.load_source("mni")
