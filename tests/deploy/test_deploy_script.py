"""The reconstruction script of docs/deploy.md, read from the doc and run as a user would
(`python reconstruct.py MODEL SOURCE OUT`) on fastMRI-layout files, in a Python process in which
`import torch` fails (a `torch` package on PYTHONPATH that raises ImportError); its output is
compared with the eager model and with `mrdistill predict` on the same file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import numpy as np
import torch

from mrdistill.config import DataConfig, FastMRIConfig, MaskConfig
from mrdistill.deploy.export import export_checkpoint
from mrdistill.physics.fft import magnitude
from mrdistill.physics.masks import fastmri_seed, make_mask
from mrdistill.train.checkpoint import load_model
from tests.conftest import run_cli
from tests.data.format_fixtures import write_fastmri_volume
from tests.deploy.export_cases import VARNET, write_checkpoint

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def doc_script() -> str:
    match = re.search(r"<!-- deploy-script -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/deploy.md lost its deploy-script block"
    return match.group(1)


def run_without_torch(tmp_path: Path, *args: Path) -> subprocess.CompletedProcess:
    """The doc's script in a fresh interpreter whose `import torch` raises ImportError."""
    shim = tmp_path / "no_torch"
    (shim / "torch").mkdir(parents=True, exist_ok=True)
    (shim / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    script = tmp_path / "reconstruct.py"
    script.write_text(doc_script())
    env = {**os.environ, "PYTHONPATH": str(shim)}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "torch is blocked" in probe.stderr
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def reconstruction(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return f["reconstruction"][()]


def assert_script_matches_predict(tmp_path: Path, capsys, model: Path, ckpt: Path, source: Path,
                                  slices: int) -> None:
    """The doc's script (without torch) and `mrdistill predict` (defaults) on `source` agree to
    1e-4 of the image max; both write the target's 16 x 16 crop."""
    proc = run_without_torch(tmp_path, model, source, tmp_path / "out.h5")
    assert proc.returncode == 0, proc.stderr
    code, _, err = run_cli(["predict", source, "--checkpoint", ckpt, "--out", tmp_path / "pred",
                            "--no-progress"], capsys)
    assert code == 0, err
    got, want = reconstruction(tmp_path / "out.h5"), reconstruction(tmp_path / "pred" / source.name)
    assert got.shape == want.shape == (slices, 16, 16)
    assert float(np.abs(got - want).max() / np.abs(want).max()) < 1e-4


def test_doc_script_reconstructs_a_single_coil_file_without_torch(tmp_path):
    """A checkpoint without a data record: the script draws predict's fallback mask (fastMRI's
    random 4x mask, seeded with the file name)."""
    h, w = 32, 24
    source = write_fastmri_volume(tmp_path / "file1000.h5", slices=2, height=h, width=w)
    ckpt = write_checkpoint(tmp_path / "student.pt", "dccnn", {"cascades": 2, "convs": 3, "channels": 8})
    export_checkpoint(ckpt, "onnx", tmp_path / "student.onnx", shape=(h, w))
    assert "torch" not in doc_script()
    proc = run_without_torch(tmp_path, tmp_path / "student.onnx", source, tmp_path / "out.h5")
    assert proc.returncode == 0, proc.stderr
    got = reconstruction(tmp_path / "out.h5")
    # The same reconstruction in-process with the eager model, predict's fallback mask and scaling.
    with h5py.File(source) as f:
        kspace, scale = torch.from_numpy(f["kspace"][()]), float(f.attrs["max"])
    mask = make_mask("random", (h, w), 4.0, seed=fastmri_seed(source.name)).reshape(1, 1, 1, w)
    with torch.no_grad():
        eager = magnitude(load_model(ckpt)(kspace[:, None] * mask / scale, mask).image)[:, 0] * scale
    assert got.shape == (2, 16, 16)  # the target's size, as predict writes
    top, left = (h - 16) // 2, (w - 16) // 2
    eager = eager[:, top:top + 16, left:left + 16]
    assert float(np.abs(got - eager.numpy()).max() / eager.abs().max()) < 1e-4


def test_doc_script_matches_predict_on_a_multicoil_file_without_torch(tmp_path, capsys):
    """An E2E-VarNet trained on fastMRI multi-coil files, exported for 4 coils, reconstructs a
    4-coil file with zero-padded phase-encode columns exactly as `mrdistill predict` does (the
    sidecar's training mask drawn for the file, padding never sampled, the `max` scaling); a file
    with another coil count is refused with one line."""
    h, w = 32, 24
    source = write_fastmri_volume(tmp_path / "data" / "file_brain_1.h5", slices=3, coils=4, height=h, width=w,
                                  padding=(2, 22), recon=(16, 16))
    data = DataConfig(dataset="fastmri", mode="complex", image_size=32,
                      mask=MaskConfig(kind="random", acceleration=4.0, center_fraction=0.08),
                      fastmri=FastMRIConfig(challenge="multicoil", coil_mode="multi"))
    ckpt = write_checkpoint(tmp_path / "varnet.pt", "varnet", VARNET, data)
    result = export_checkpoint(ckpt, "onnx", tmp_path / "varnet.onnx", shape=(h, w), coils=4)
    assert result.record["training_data"]["mask"]["kind"] == "random"
    assert_script_matches_predict(tmp_path, capsys, tmp_path / "varnet.onnx", ckpt, source, slices=3)

    other = write_fastmri_volume(tmp_path / "data" / "file_brain_2.h5", slices=1, coils=3, height=h, width=w)
    proc = run_without_torch(tmp_path, tmp_path / "varnet.onnx", other, tmp_path / "other.h5")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "the model takes (4, 32, 24)" in proc.stderr
    assert not (tmp_path / "other.h5").exists()


def test_chain_fastmri_teacher_distil_kill_resume_export_torch_free_run(tmp_path, capsys):
    """The user's chain on tiny data: an E2E-VarNet of the `fastmri` package saved as a Lightning
    checkpoint -> `distill` into a small VarNet (configs/varnet_kd.yaml, smoke preset) -> SIGKILL
    after step 2 and `--resume` -> `export` ONNX (training size and coils by default) -> the doc's
    script without torch on a 4-coil fastMRI file -> the same images as `predict`."""
    fm_models = pytest.importorskip("fastmri.models", reason="the fastmri package (0.3.0) is not installed")
    from tests.train.test_resume import killed
    from tests.train.test_teachers import CONFIGS, SMOKE_TEACHER

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        teacher = fm_models.VarNet(**SMOKE_TEACHER)
    lightning = tmp_path / "varnet.ckpt"
    torch.save({"state_dict": {f"varnet.{k}": v for k, v in teacher.state_dict().items()}, "epoch": 9,
                "pytorch-lightning_version": "1.9.0"}, lightning)
    args = ["distill", "--config", CONFIGS / "varnet_kd.yaml", "--preset", "smoke", "--set", f"out_dir={tmp_path}",
            "--set", f"distill.teacher.weights={lightning}", "--set", "distill.teacher.format=fastmri",
            "--set", "optim.batch_size=1", "--set", "optim.checkpoint_every=1", "--no-progress"]
    killed("step:2", [str(a) for a in args])
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    best = tmp_path / "varnet_kd" / "checkpoints" / "best.pt"
    # Score teacher, plain student, distilled student and zero-filled on the same test data: the
    # teacher as the foreign model it is, the plain student as its own run.
    teacher_args = ["--model", "varnet", *[a for k, v in SMOKE_TEACHER.items() for a in ("--set", f"{k}={v}")],
                    "--weights", lightning, "--format", "fastmri"]
    code, _, err = run_cli(["evaluate", "--run", tmp_path / "varnet_kd", "--out", tmp_path / "ev_kd",
                            *teacher_args], capsys)
    assert code == 0, err
    plain = ["train", "--config", CONFIGS / "varnet_student.yaml", "--preset", "smoke", "--set", f"out_dir={tmp_path}",
             "--no-progress"]
    assert run_cli(plain, capsys)[0] == 0
    code, _, err = run_cli(["evaluate", "--run", tmp_path / "varnet_student", "--out", tmp_path / "ev_plain"], capsys)
    assert code == 0, err
    kd_rows = json.loads((tmp_path / "ev_kd" / "metrics.json").read_text())["models"]
    plain_rows = json.loads((tmp_path / "ev_plain" / "metrics.json").read_text())["models"]
    labels = list(kd_rows)  # zero-filled, the classical baselines of multi-coil data, teacher, student
    assert labels[0] == "zero-filled" and "CG-SENSE" in labels and labels[-1] == "varnet_kd"
    assert "varnet.ckpt" in labels[-2]  # the teacher's row names its weights
    assert "varnet_student" in plain_rows
    assert kd_rows["zero-filled"]["psnr"] == plain_rows["zero-filled"]["psnr"]  # the same test data
    assert all(np.isfinite(row["psnr"]["mean"]) for row in (*kd_rows.values(), *plain_rows.values()))
    code, _, err = run_cli(["export", best, "--format", "onnx", "--out", tmp_path / "student.onnx"], capsys)
    assert code == 0, err
    source = write_fastmri_volume(tmp_path / "data" / "file1001.h5", slices=2, coils=4, height=32, width=32,
                                  recon=(16, 16))
    # Trained on simulated coils (data.coils 4): predict keeps the file's coils apart by default.
    assert_script_matches_predict(tmp_path, capsys, tmp_path / "student.onnx", best, source, slices=2)
