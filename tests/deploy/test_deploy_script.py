"""The reconstruction script of docs/deploy.md, read from the doc and run as a user would: on a
fastMRI-layout file, in a Python process in which torch cannot be imported."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from mrdistill.deploy.export import export_checkpoint
from mrdistill.physics.fft import magnitude
from mrdistill.train.checkpoint import load_model
from tests.data.format_fixtures import write_fastmri_volume
from tests.deploy.export_cases import write_checkpoint

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
RUNNER = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
          "runpy.run_path(sys.argv[0], run_name='__main__')")


def doc_script() -> str:
    match = re.search(r"<!-- deploy-script -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/deploy.md lost its deploy-script block"
    return match.group(1)


def test_doc_script_reconstructs_a_fastmri_file_without_torch(tmp_path):
    h, w = 32, 24
    source = write_fastmri_volume(tmp_path / "file1000.h5", slices=2, height=h, width=w)
    ckpt = write_checkpoint(tmp_path / "student.pt", "dccnn", {"cascades": 2, "convs": 3, "channels": 8})
    export_checkpoint(ckpt, "onnx", tmp_path / "student.onnx", shape=(h, w))
    script = tmp_path / "reconstruct.py"
    script.write_text(doc_script())
    assert "torch" not in doc_script() and len(doc_script().splitlines()) <= 40
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(script), str(tmp_path / "student.onnx"),
                           str(source), str(tmp_path / "out.h5")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out.h5") as f:
        got = f["reconstruction"][()]
    # The same reconstruction in-process with the eager model: the script's mask and scaling.
    with h5py.File(source) as f:
        kspace, scale = torch.from_numpy(f["kspace"][()]), float(f.attrs["max"])
    mask = torch.zeros(w)
    mask[::4] = 1
    mask[w // 2 - 1:w // 2 + 1] = 1  # round(0.04 * 24) = 1 column each side
    k = (kspace * mask / scale)[:, None]
    with torch.no_grad():
        eager = magnitude(load_model(ckpt)(k, mask.reshape(1, 1, 1, w)).image)[:, 0] * scale
    assert got.shape == (2, h, w)
    assert float(np.abs(got - eager.numpy()).max() / eager.abs().max()) < 1e-4
