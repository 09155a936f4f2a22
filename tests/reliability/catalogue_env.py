"""The user's folder every bad-input case runs in (inputs, a checkpoint, a previous run, sentinel
files next to the outputs) and the helpers that build a case's command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import write_fastmri_volume, write_nifti  # noqa: E402

from mrdistill.config import RunConfig, from_dict, save_config  # noqa: E402
from mrdistill.models import build_model  # noqa: E402
from mrdistill.rundir import claim  # noqa: E402
from mrdistill.train.checkpoint import model_payload, save_checkpoint  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_KW = {"cascades": 1, "convs": 2, "channels": 4, "in_channels": 1}


class Env(NamedTuple):
    """A user's folder: inputs, a checkpoint, a previous run and a sentinel next to the outputs."""

    root: Path
    runs: Path  # out_dir of train/distill; holds the previous run `prev` and the sentinel
    nifti: Path  # a NIfTI volume in scans/
    scans: Path
    ckpt: Path  # a tiny real-image DC-CNN checkpoint
    other_ckpt: Path  # a MoDL checkpoint (another architecture)
    run: Path  # a finished-looking run folder (config.yaml + checkpoints/best.pt) for evaluate
    zeros: Path  # an all-zero mask file
    fastmri: Path  # a fastMRI HDF5 file
    garbage: Path  # a file that is not a checkpoint


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Read-only inputs shared by every case (built once: a few ms)."""
    root = tmp_path_factory.mktemp("assets")
    ckpt = root / "dccnn.pt"
    save_checkpoint(ckpt, model_payload(build_model("dccnn", seed=0, **TINY_KW), "dccnn", TINY_KW))
    other = root / "modl.pt"
    kw = {"unrolls": 1, "convs": 2, "channels": 4, "in_channels": 1, "cg_iters": 1}
    save_checkpoint(other, model_payload(build_model("modl", seed=0, **kw), "modl", kw))
    np.save(root / "zeros.npy", np.zeros(32, dtype=np.float32))
    (root / "garbage.pt").write_bytes(b"not a checkpoint at all")
    return {"ckpt": ckpt, "other": other, "zeros": root / "zeros.npy",
            "fastmri": write_fastmri_volume(root / "knee.h5", slices=1),
            "garbage": root / "garbage.pt"}


@pytest.fixture
def env(tmp_path, assets, monkeypatch) -> Env:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MRDISTILL_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    with claim(runs / "prev") as out:  # the previous run a bad --overwrite must not cost
        (out.path / "best.pt").write_text("previous results")
    (runs / "sentinel.txt").write_text("the user's file")
    (tmp_path / "sentinel.txt").write_text("the user's file")
    scans = tmp_path / "scans"
    nifti = write_nifti(scans / "a.nii.gz")
    run = tmp_path / "done"
    (run / "checkpoints").mkdir(parents=True)
    cfg = from_dict(RunConfig, {"data": {"image_size": 32}, "model": {"kwargs": TINY_KW}})
    save_config(cfg, run / "config.yaml")
    (run / "checkpoints" / "best.pt").write_bytes(assets["ckpt"].read_bytes())
    return Env(tmp_path, runs, nifti, scans, assets["ckpt"], assets["other"], run, assets["zeros"],
               assets["fastmri"], assets["garbage"])


class Case(NamedTuple):
    name: str
    argv: Callable[[Env], list]
    expect: str  # a piece of the one line: the key or file it names


def train_argv(*sets: str, config: str = "kdmri_teacher.yaml", overwrite: bool = True) -> Callable[[Env], list]:
    def argv(e: Env) -> list:
        base = ["train", "--config", CONFIGS / config, "--preset", "smoke", "--no-progress",
                "--set", f"out_dir={e.runs}", "--set", "name=prev"]
        return base + (["--overwrite"] if overwrite else []) + [a for s in sets for a in ("--set", s.format(e=e))]
    return argv


def distill_argv(*sets: str) -> Callable[[Env], list]:
    def argv(e: Env) -> list:
        return (["distill", "--config", CONFIGS / "kdmri_kd.yaml", "--no-progress", "--overwrite",
                 "--set", f"out_dir={e.runs}", "--set", "name=prev", "--set", "data.image_size=32",
                 "--set", f"distill.teacher={e.ckpt}"] + [a for s in sets for a in ("--set", s.format(e=e))])
    return argv


def files_argv(bad: str, content: bytes | dict) -> Callable[[Env], list]:
    """evaluate of targets t/ against predictions p/ (both a copy of the fastMRI file), with the
    file `bad` replaced by `content` (bytes, or HDF5 datasets)."""
    def argv(e: Env) -> list:
        for name in ("t", "p"):
            (e.root / name).mkdir()
            (e.root / name / "knee.h5").write_bytes(e.fastmri.read_bytes())
        if isinstance(content, bytes):
            (e.root / bad).write_bytes(content)
        else:
            with h5py.File(e.root / bad, "w") as f:
                f.update({k: np.full((1, 4, 4), v) for k, v in content.items()})
        return ["evaluate", "--target-path", e.root / "t", "--predictions-path", e.root / "p", "--out", e.root / "ev"]
    return argv


def cmd_argv(*args: str) -> Callable[[Env], list]:
    return lambda e: [str(a).format(e=e) for a in args]


def write_nifti_5d(path: Path) -> Path:
    """A NIfTI whose fifth dimension holds two values (vector components)."""
    import nibabel as nib
    import numpy as np

    data = np.arange(8 * 6 * 3 * 2, dtype=np.float32).reshape(8, 6, 3, 1, 2) + 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def write_pickle_with_code(path: Path) -> Path:
    """torch.save's zip layout with a pickle that would call os.system (never run)."""
    import io
    import pickle
    import zipfile

    class Code:
        def __reduce__(self):
            return (os.system, ("true",))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"model": Code()}, protocol=2))
        z.writestr("archive/version", "3\n")
    path.write_bytes(buf.getvalue())
    return path
