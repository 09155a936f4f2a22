"""predict.json records complete outputs; a killed predict continues where it stopped."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import write_fastmri_folder, write_nifti, write_png_folder  # noqa: E402

import mrdistill.train.predict as predict_module  # noqa: E402
from mrdistill.models import build_model  # noqa: E402
from mrdistill.train.checkpoint import model_payload, save_checkpoint  # noqa: E402
from mrdistill.train.predict import predict  # noqa: E402


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs in the predict call."""


def _checkpoint(tmp_path: Path) -> Path:
    kwargs = {"cascades": 1, "convs": 2, "channels": 4, "in_channels": 2}
    path = tmp_path / "m.pt"
    save_checkpoint(path, model_payload(build_model("dccnn", seed=0, **kwargs), "dccnn", kwargs))
    return path


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MRDISTILL_CACHE_DIR", str(tmp_path / "cache"))


def test_a_killed_predict_continues_where_it_stopped(tmp_path, monkeypatch):
    data = write_fastmri_folder(tmp_path / "in", 3, slices=2, height=16, width=12, recon=(8, 8))
    ckpt, out = _checkpoint(tmp_path), tmp_path / "pred"
    real = predict_module.write_reconstruction
    calls = []

    def dies_on_the_second(path, recon, attrs):
        calls.append(Path(path).name)
        if len(calls) == 2:
            (out / f".file1001.h5.{_dead_pid()}.0badf00d.tmp").write_bytes(b"half")  # a killed write
            raise Killed
        real(path, recon, attrs)

    monkeypatch.setattr(predict_module, "write_reconstruction", dies_on_the_second)
    with pytest.raises(Killed):
        predict(ckpt, [data], out, progress=False)
    record = json.loads((out / "predict.json").read_text())
    assert record["finished"] is False and [o["output"] for o in record["outputs"]] == ["file1000.h5"]
    first_mtime = (out / "file1000.h5").stat().st_mtime_ns

    result = predict(ckpt, [data], out, progress=False)  # the same command again
    assert calls == ["file1000.h5", "file1001.h5", "file1001.h5", "file1002.h5"]  # 1000 not redone
    assert [p.name for p in result.resumed] == ["file1000.h5"] and len(result.written) == 3
    assert (out / "file1000.h5").stat().st_mtime_ns == first_mtime
    record = json.loads((out / "predict.json").read_text())
    assert record["finished"] is True and len(record["outputs"]) == 3
    assert sorted(p.name for p in out.iterdir()) == ["file1000.h5", "file1001.h5", "file1002.h5", "predict.json"]
    for name in ("file1000.h5", "file1002.h5"):
        with h5py.File(out / name) as f:
            assert f["reconstruction"].shape == (2, 8, 8)


def test_a_finished_or_foreign_predict_folder_is_not_continued(tmp_path):
    data = write_fastmri_folder(tmp_path / "in", 1, slices=2, height=16, width=12, recon=(8, 8))
    ckpt, out = _checkpoint(tmp_path), tmp_path / "pred"
    predict(ckpt, [data], out, progress=False)
    with pytest.raises(Exception, match="already exists and is not empty"):
        predict(ckpt, [data], out, progress=False)
    doc = json.loads((out / "predict.json").read_text())
    doc["finished"] = False
    doc["options"]["batch_size"] = 99  # another run's record
    (out / "predict.json").write_text(json.dumps(doc))
    with pytest.raises(Exception, match="already exists and is not empty"):
        predict(ckpt, [data], out, progress=False)


def test_image_outputs_are_atomic_and_get_the_umask_permissions(tmp_path):
    ckpt, out = _checkpoint(tmp_path), tmp_path / "pred"
    nifti = write_nifti(tmp_path / "in" / "v.nii.gz", shape=(12, 10, 2))
    pngs = write_png_folder(tmp_path / "in" / "png", n=2, size=(12, 10))
    old = os.umask(0o022)
    try:
        result = predict(ckpt, [nifti, pngs], out, progress=False)
    finally:
        os.umask(old)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["png", "predict.json", "v.nii.gz"], names  # no temporaries left
    assert len(result.written) == 2
    for path in (out / "v.nii.gz", out / "predict.json", out / "png" / "img1.png"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    import nibabel as nib

    assert nib.load(str(out / "v.nii.gz")).shape == (12, 10, 2)
