"""`predict`, `prepare` and fastMRI-mode `evaluate` on tiny files in the real formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import (write_dicom_series, write_fastmri_folder,  # noqa: E402
                             write_fastmri_volume, write_nifti, write_png_folder)

from mrdistill.cli.main import main  # noqa: E402
from mrdistill.eval.metrics import psnr, ssim  # noqa: E402
from mrdistill.models import build_model, list_models  # noqa: E402
from mrdistill.accel import optimise_for_inference  # noqa: E402
from mrdistill.config import DataConfig, MaskConfig  # noqa: E402
from mrdistill.physics.fft import fft2c, ifft2c  # noqa: E402
from mrdistill.physics.masks import make_mask, stable_seed  # noqa: E402
from mrdistill.train.checkpoint import (data_meta, load_checkpoint, model_payload,  # noqa: E402
                                        save_checkpoint)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = ["--set", "model.kwargs.cascades=1", "--set", "data.max_train_slices=4",
         "--set", "data.max_eval_slices=4", "--no-progress"]
TINY = ["--set", "optim.epochs=1", *SMALL]  # distill: stages set their own epochs
BIG = {"height": 64, "width": 48, "recon": (48, 48)}  # VIF needs slices of at least 41x41


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MRDISTILL_CACHE_DIR", str(tmp_path / "cache"))


def cli(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def checkpoint(tmp_path, name="dccnn", data=None, **kwargs) -> Path:
    """A checkpoint of a seeded model; `data`: the DataConfig to record as its training data."""
    kwargs = kwargs or {"cascades": 1, "convs": 2, "channels": 4, "in_channels": 2}
    path = tmp_path / f"{name}.pt"
    meta = {} if data is None else data_meta(data)
    save_checkpoint(path, model_payload(build_model(name, seed=0, **kwargs), name, kwargs, **meta))
    return path


def test_predict_uses_the_training_mask_by_default(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "vol.npy", np.random.default_rng(0).random((2, 32, 32)))
    trained = DataConfig(mask=MaskConfig(kind="kdmri", acceleration=4.0))
    ckpt = checkpoint(tmp_path, data=trained, cascades=1, convs=2, channels=4, in_channels=1)
    args = ["predict", tmp_path / "in", "--checkpoint", ckpt, "--no-progress", "--out"]
    code, out, _ = cli([*args, tmp_path / "default"], capsys)
    assert code == 0 and "note:" not in out
    log = json.loads((tmp_path / "default" / "predict.json").read_text())
    assert log["mask_source"] == "checkpoint" and log["options"]["mask"]["kind"] == "kdmri"
    assert cli([*args, tmp_path / "kdmri", "--mask", "kdmri"], capsys)[0] == 0
    code, out, _ = cli([*args, tmp_path / "random", "--mask", "random"], capsys)
    assert code == 0 and "note: mask random 4x given; the model was trained with kdmri 4x" in out
    assert json.loads((tmp_path / "random" / "predict.json").read_text())["mask_source"] == "given"
    default, kdmri, random = (np.load(tmp_path / d / "vol.npy") for d in ("default", "kdmri", "random"))
    assert np.array_equal(default, kdmri) and not np.allclose(default, random)
    # --acceleration alone modifies the training mask (kdmri), it does not fall back to another kind
    assert cli([*args, tmp_path / "x8", "--acceleration", 8], capsys)[0] == 0
    assert json.loads((tmp_path / "x8" / "predict.json").read_text())["options"]["mask"]["kind"] == "kdmri"
    # --zero-filled: the baseline with exactly the model's masks (kdmri, seeded by the volume name)
    assert cli([*args, tmp_path / "zf", "--zero-filled"], capsys)[0] == 0
    vol = np.load(tmp_path / "in" / "vol.npy")
    mask = make_mask("kdmri", (32, 32), 4.0, seed=stable_seed("vol"))
    kspace = fft2c(torch.from_numpy(vol / vol.max()).to(torch.complex64)) * mask
    expected = ifft2c(kspace).real.abs().numpy() * vol.max()  # real-image model: Re(), as it sees it
    np.testing.assert_allclose(np.load(tmp_path / "zf" / "vol.npy"), expected, rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "zf" / "predict.json").read_text())["options"]["zero_filled"] is True
    # a checkpoint without a record gets the fallback, and says so
    code, out, _ = cli([*args[:3], checkpoint(tmp_path, cascades=1, convs=2, channels=4, in_channels=1),
                        "--no-progress", "--out", tmp_path / "old"], capsys)
    assert code == 0 and "records no training mask" in out


def test_predict_then_evaluate_like_fastmri(tmp_path, capsys):
    val = write_fastmri_folder(tmp_path / "singlecoil_val", 2, slices=2, **BIG)
    code, out, _ = cli(["predict", val, "--checkpoint", checkpoint(tmp_path), "--out", tmp_path / "pred",
                        "--no-progress"], capsys)
    assert code == 0 and "wrote 2 volume(s)" in out
    with h5py.File(tmp_path / "pred" / "file1000.h5") as f:
        recon = f["reconstruction"][()]
    assert recon.shape == (2, 48, 48) and recon.dtype == np.float32
    code, out, _ = cli(["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred",
                        "--no-progress"], capsys)
    assert code == 0 and "2 volumes: NMSE = " in out and "VIF" in out
    ev = tmp_path / "pred" / "evaluation"
    rows = (ev / "per_slice.csv").read_text().splitlines()
    assert rows[0] == "volume,slice,nmse,psnr,ssim,hfen,vif" and len(rows) == 5
    with h5py.File(val / "file1000.h5") as f:
        target = f["reconstruction_esc"][()]
    per_volume = (ev / "per_volume.csv").read_text().splitlines()[1].split(",")
    assert float(per_volume[3]) == pytest.approx(psnr(target, recon), rel=1e-9)  # fastMRI: gt.max()
    assert float(per_volume[4]) == pytest.approx(ssim(target, recon), rel=1e-9)
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(metrics["models"]["pred"]) == {"nmse", "psnr", "ssim", "hfen", "vif"}
    assert metrics["meta"]["volumes"] == 2



def test_evaluate_several_prediction_folders_in_one_table(tmp_path, capsys):
    val = write_fastmri_folder(tmp_path / "singlecoil_val", 2, slices=3, **BIG)
    ckpt = checkpoint(tmp_path, data=DataConfig(mode="complex", mask=MaskConfig(kind="random")))
    common = ["predict", val, "--checkpoint", ckpt, "--no-progress", "--out"]
    assert cli([*common, tmp_path / "model"], capsys)[0] == 0
    assert cli([*common, tmp_path / "zero_filled", "--zero-filled"], capsys)[0] == 0
    args = ["evaluate", "--target-path", val, "--predictions-path", tmp_path / "zero_filled",
            tmp_path / "model", "--no-progress"]
    code, _, err = cli(args, capsys)
    assert code == 2 and "give --out" in err
    code, out, _ = cli([*args, "--out", tmp_path / "ev"], capsys)
    assert code == 0 and "zero_filled: 2 volumes" in out and "model: 2 volumes" in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert list(metrics["models"]) == ["zero_filled", "model"]
    # each folder's row is what scoring that folder alone gives
    assert cli(["evaluate", "--target-path", val, "--predictions-path", tmp_path / "model",
                "--no-progress"], capsys)[0] == 0
    alone = json.loads((tmp_path / "model" / "evaluation" / "metrics.json").read_text())["models"]["model"]
    assert metrics["models"]["model"] == alone
    rows = (tmp_path / "ev" / "per_volume.csv").read_text().splitlines()
    assert rows[0].startswith("predictions,volume,") and len(rows) == 5
    # a figure (the middle slice) of every volume up to --figures, and an index of them
    figures = sorted(p.name for p in (tmp_path / "ev" / "figures").iterdir())
    assert figures == ["file1000_slice1.png", "file1001_slice1.png", "index.md"]
    index = (tmp_path / "ev" / "figures" / "index.md").read_text()
    assert "| file1000 | 1 | [file1000_slice1.png](file1000_slice1.png) |" in index
    assert "| file1001 | 1 |" in index
    assert "figure: file1001_slice1.png" in (tmp_path / "ev" / "report.md").read_text()
    assert cli([*args, "--out", tmp_path / "ev1", "--figures", "1"], capsys)[0] == 0
    assert sorted(p.name for p in (tmp_path / "ev1" / "figures").iterdir()) == ["file1000_slice1.png", "index.md"]
    code, _, err = cli([*args, "--out", tmp_path / "ev2", "--figures", "-1"], capsys)
    assert code == 2 and "--figures must be in 0..1000" in err and not (tmp_path / "ev2").exists()


def test_predict_test_files_and_multicoil(tmp_path, capsys):
    write_fastmri_folder(tmp_path / "in", 1, slices=2, test_acceleration=4)
    write_fastmri_volume(tmp_path / "in" / "mc.h5", slices=2, coils=3, width=48)
    args = ["predict", tmp_path / "in", "--checkpoint", checkpoint(tmp_path), "--no-progress"]
    code, _, err = cli([*args, "--out", tmp_path / "p16", "--acceleration", 16], capsys)
    assert code == 2 and "mc.h5: the mask has 1 fully sampled central column" in err
    code, _, _ = cli([*args, "--out", tmp_path / "pred", "--acceleration", 8], capsys)
    assert code == 0
    for name in ("file1000", "mc"):
        with h5py.File(tmp_path / "pred" / f"{name}.h5") as f:
            assert f["reconstruction"].shape == (2, 16, 16)
    log = json.loads((tmp_path / "pred" / "predict.json").read_text())
    assert log["options"]["mask"] == {"kind": "random", "acceleration": 8.0, "center_fraction": None,
                                      "center_lines": None, "path": None, "fresh_train_masks": False}


def test_predict_fast_path_gives_the_eager_images(tmp_path, capsys, recwarn, monkeypatch):
    import mrdistill.train.inference as inference

    built = []
    monkeypatch.setattr(inference, "optimise_for_inference",
                        lambda *a, **k: built.append(1) or optimise_for_inference(*a, **k))
    val = write_fastmri_folder(tmp_path / "val", 2, slices=3, **BIG)
    ckpt = checkpoint(tmp_path, cascades=2, convs=3, channels=16, in_channels=2)
    args = ["predict", val, "--checkpoint", ckpt, "--no-progress", "--batch-size", 2]
    assert cli([*args, "--out", tmp_path / "fast"], capsys)[0] == 0
    assert len(built) == 1  # two files of one shape share one fast module
    assert cli([*args, "--out", tmp_path / "eager", "--no-fast"], capsys)[0] == 0
    for run, fast in (("fast", True), ("eager", False)):
        assert json.loads((tmp_path / run / "predict.json").read_text())["options"]["fast"] is fast
    for name in ("file1000.h5", "file1001.h5"):
        with h5py.File(tmp_path / "fast" / name) as f, h5py.File(tmp_path / "eager" / name) as g:
            fast, eager = f["reconstruction"][()], g["reconstruction"][()]
        assert fast.shape == eager.shape == (3, 48, 48)
        assert np.abs(fast - eager).max() <= 1e-5 * np.abs(eager).max()
    assert not [w for w in recwarn if "fast DC-CNN path" in str(w.message)]  # no eager fallback


def test_predict_image_volumes_keep_their_format(tmp_path, capsys):
    write_nifti(tmp_path / "in" / "brain.nii.gz", shape=(24, 20, 3))
    write_dicom_series(tmp_path / "in" / "scan", n=3)
    write_png_folder(tmp_path / "in" / "pngs", n=2)
    np.save(tmp_path / "in" / "stack.npy", np.random.default_rng(0).random((2, 16, 16)))
    real = checkpoint(tmp_path, cascades=1, convs=2, channels=4, in_channels=1)
    code, out, _ = cli(["predict", tmp_path / "in", "--checkpoint", real, "--out", tmp_path / "o",
                        "--no-progress"], capsys)
    assert code == 0 and "wrote 4 volume(s)" in out
    assert nib.load(str(tmp_path / "o" / "brain.nii.gz")).shape == (24, 20, 3)
    assert nib.load(str(tmp_path / "o" / "scan.nii.gz")).shape == (20, 24, 3)
    assert sorted(p.name for p in (tmp_path / "o" / "pngs").iterdir()) == ["img1.png", "img2.png"]
    assert np.load(tmp_path / "o" / "stack.npy").shape == (2, 16, 16)


@pytest.mark.skipif("chpnet" not in list_models(), reason="no super-resolution model registered")
def test_predict_with_a_super_resolution_model(tmp_path, capsys, monkeypatch):
    write_png_folder(tmp_path / "pngs", n=2, size=(16, 12))
    sr = checkpoint(tmp_path, "chpnet", scale=2, channels=4, levels=2, iterations=1)
    code, _, _ = cli(["predict", tmp_path / "pngs", "--checkpoint", sr, "--out", tmp_path / "o",
                      "--no-progress"], capsys)
    assert code == 0
    assert np.asarray(__import__("PIL.Image").Image.open(tmp_path / "o" / "pngs" / "img1.png")).shape == (32, 24)


def _break(kind: str, root: Path) -> tuple[Path, Path, str]:
    """(input to pass, the file the message must name, expected problem)."""
    if kind == "empty":
        (root / "empty").mkdir()
        return root / "empty", root / "empty", "empty folder"
    if kind == "dicom":
        folder = write_dicom_series(root / "scan", n=3, odd_size_file=1)
        return folder, folder, "mixes image sizes"
    bad = root / "vols" / "bad.h5"
    write_fastmri_volume(bad, slices=2)
    if kind == "truncated":
        bad.write_bytes(bad.read_bytes()[:2500])
        return root / "vols", bad, "truncated HDF5 file"
    if kind == "not_hdf5":
        bad.write_bytes(b"GIF89a not an hdf5 file")
        return root / "vols", bad, "not an HDF5 file"
    with h5py.File(bad, "a") as f:
        if kind == "no_kspace":
            del f["kspace"]
        else:
            f["kspace"][1, 0, 0] = np.inf
    return root / "vols", bad, "no 'kspace' dataset" if kind == "no_kspace" else "slice 1 contains NaN or Inf"


@pytest.mark.parametrize("kind", ["truncated", "not_hdf5", "no_kspace", "nan", "dicom", "empty"])
def test_bad_input_one_line_exit_2_and_skip_bad(tmp_path, capsys, kind):
    good = write_fastmri_volume(tmp_path / "vols" / "good.h5", slices=2)
    given, named, problem = _break(kind, tmp_path)
    inputs = [given] if given == tmp_path / "vols" else [given, tmp_path / "vols"]
    args = ["predict", *inputs, "--checkpoint", checkpoint(tmp_path), "--no-progress"]
    code, _, err = cli([*args, "--out", tmp_path / "o1"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(named) in err and problem in err
    code, out, err = cli([*args, "--out", tmp_path / "o2", "--skip-bad"], capsys)
    assert code == 0 and err == "" and "skipped 1 bad input(s):" in out and problem in out
    assert (tmp_path / "o2" / f"{good.stem}.h5").exists()


def test_evaluate_errors_and_filters(tmp_path, capsys):
    val = write_fastmri_folder(tmp_path / "val", 2, slices=2, **BIG)
    (tmp_path / "pred").mkdir()
    code, _, err = cli(["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred"], capsys)
    assert code == 2 and "file1000.h5: no prediction for target file1000.h5" in err
    code, _, err = cli(["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred",
                        "--acquisition", "AXT2"], capsys)
    assert code == 2 and "no target file matches acquisition=AXT2" in err
    code, _, err = cli(["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred",
                        "--run", tmp_path], capsys)
    assert code == 2 and "not both" in err
    code, _, err = cli(["evaluate"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    for i in range(2):  # perfect predictions, one slice missing from the second
        with h5py.File(val / f"file100{i}.h5") as f, h5py.File(tmp_path / "pred" / f"file100{i}.h5", "w") as g:
            g["reconstruction"] = f["reconstruction_esc"][()][: 2 - i]
    code, _, err = cli(["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred",
                        "--no-progress"], capsys)
    assert code == 2 and "file1001.h5: prediction shape (1, 48, 48) does not match the target's (2, 48, 48)" in err
    code, out, _ = cli(["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred",
                        "--acceleration", 4, "--no-progress"], capsys)
    assert code == 2  # validation targets carry no 'acceleration' attribute: nothing matches
    with h5py.File(tmp_path / "pred" / "file1001.h5", "a") as g:
        del g["reconstruction"]
        g["reconstruction"] = h5py.File(val / "file1001.h5")["reconstruction_esc"][()]
    code, out, _ = cli(["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred",
                        "--challenge", "singlecoil", "--acquisition", "CORPD_FBK", "--no-progress"], capsys)
    assert code == 0 and "PSNR = inf" in out and "SSIM = 1 +/- 0" in out
    (val / "file1002.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)  # a damaged target
    args = ["evaluate", "--target-path", val, "--predictions-path", tmp_path / "pred", "--challenge",
            "singlecoil", "--metrics", "psnr", "--no-progress", "--out", tmp_path / "ev"]
    code, _, err = cli(args, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "file1002.h5: " in err
    code, out, _ = cli([*args, "--skip-bad"], capsys)
    assert code == 0 and "skipped 1 bad target file(s):\n  " + str(val / "file1002.h5") in out
    meta = json.loads((tmp_path / "ev" / "metrics.json").read_text())["meta"]
    assert meta["volumes"] == 2 and meta["skipped"][0].startswith(str(val / "file1002.h5") + ": ")


def test_prepare_then_train_on_it(tmp_path, capsys):
    write_nifti(tmp_path / "a.nii.gz", shape=(24, 24, 12))
    write_png_folder(tmp_path / "pngs", n=4, size=(24, 24))
    code, out, _ = cli(["prepare", tmp_path / "a.nii.gz", tmp_path / "pngs", tmp_path / "missing.nii",
                        "--out", tmp_path / "prep", "--slab", 2, "--skip-bad", "--no-progress"], capsys)
    assert code == 0 and "train:" in out and "skipped 1 bad input(s)" in out and "missing.nii: not found" in out
    manifest = json.loads((tmp_path / "prep" / "prepare.json").read_text())
    assert [i["kind"] for i in manifest["inputs"]] == ["nifti", "images"]
    assert manifest["command"].startswith("mrdistill prepare ") and manifest["options"]["slab"] == 2
    code, _, err = cli(["train", "--config", CONFIGS / "kdmri_student.yaml", *TINY,
                        "--set", f"out_dir={tmp_path / 'runs'}", "--set", "data.dataset=prepared",
                        "--set", f"data.path={tmp_path / 'prep'}"], capsys)
    assert code == 0, err
    code, _, err = cli(["prepare", tmp_path / "a.nii.gz", "--out", tmp_path / "prep", "--no-progress"], capsys)
    assert code == 2 and "already holds results; pass --overwrite" in err


def test_fastmri_knee_configs_train_and_distill(tmp_path, capsys):
    write_fastmri_folder(tmp_path / "knee" / "singlecoil_train", 2, slices=2)
    write_fastmri_folder(tmp_path / "knee" / "singlecoil_val", 2, slices=2)
    where = ["--set", f"out_dir={tmp_path / 'runs'}", "--set", f"data.path={tmp_path / 'knee'}"]
    common = [*TINY, *where]
    code, _, err = cli(["train", "--config", CONFIGS / "fastmri_knee_teacher.yaml", *common], capsys)
    assert code == 0, err
    teacher = tmp_path / "runs" / "fastmri_knee_teacher" / "checkpoints" / "best.pt"
    assert load_checkpoint(teacher)["data"]["mask"]["kind"] == "random"  # the training data, recorded
    assert load_checkpoint(teacher)["data"]["dataset"] == "fastmri"
    # named splits: the run recorded its volumes; predict and evaluate take the held-out ones
    run = teacher.parents[1]
    splits = json.loads((run / "splits.json").read_text())["splits"]
    assert splits["val"]["volumes"] == ["file1000"] and splits["test"]["volumes"] == ["file1001"]
    assert splits["test"]["files"] == [str((tmp_path / "knee" / "singlecoil_val" / "file1001.h5").resolve())]
    code, out, err = cli(["predict", "--run", run, "--split", "test", "--out", tmp_path / "held_out",
                          "--no-progress"], capsys)
    assert code == 0 and "wrote 1 volume(s)" in out, err
    assert sorted(p.name for p in (tmp_path / "held_out").glob("*.h5")) == ["file1001.h5"]
    assert cli(["evaluate", "--run", run, "--split", "test", "--out", tmp_path / "ev_test"], capsys)[0] == 0
    assert cli(["evaluate", "--run", run, "--out", tmp_path / "ev_default"], capsys)[0] == 0
    test_scores = json.loads((tmp_path / "ev_test" / "metrics.json").read_text())["models"]
    assert test_scores == json.loads((tmp_path / "ev_default" / "metrics.json").read_text())["models"]
    assert "split: test (recorded in splits.json)" in (tmp_path / "ev_test" / "report.md").read_text()
    (run / "splits.json").rename(tmp_path / "splits.json")  # a run that recorded none
    for command in (["predict", "--run", run, "--split", "test", "--out", tmp_path / "p2"],
                    ["evaluate", "--run", run, "--split", "test", "--out", tmp_path / "p2"]):
        code, _, err = cli(command, capsys)
        assert code == 2 and "records no splits" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "p2").exists()
    (tmp_path / "splits.json").rename(run / "splits.json")
    code, _, err = cli(["distill", "--config", CONFIGS / "fastmri_knee_kd.yaml", *SMALL, *where,
                        "--set", f"distill.teacher={teacher}",
                        "--set", "distill.stages=[{epochs: 1, kd: [{name: imitation}]}]"], capsys)
    assert code == 0, err
    code, _, err = cli(["train", "--config", CONFIGS / "fastmri_knee_student.yaml", *common,
                        "--set", "data.fastmri.challenge=multicoil"], capsys)
    assert code == 2 and "multicoil_train: folder not found" in err
