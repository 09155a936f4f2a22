"""benchmarks/measured_models.py on stand-in measured files (the pyqmri-shaped fixture), and the
per-slice intensity wrapper it shares with benchmarks/measured_eval.py."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import sys
from pathlib import Path

import torch

from mrdistill.config import DataConfig, from_dict
from mrdistill.data import measured
from mrdistill.data.build import make_datasets
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from tests.data.measured_fixtures import install_stand_ins

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def _offline(spec, folder):
    raise MrdistillError(f"could not download {spec.requirement} (offline)")


def test_slice_scaled_is_scale_equivariant_and_the_model_at_unit_peak():
    me = _load("measured_eval")
    model = build_model("dccnn", seed=0, cascades=2, convs=2, channels=4, in_channels=2, residual=True)
    wrapped = me.SliceScaled(model).eval()
    gen = torch.Generator().manual_seed(0)
    k = torch.complex(torch.randn(2, 1, 16, 16, generator=gen), torch.randn(2, 1, 16, 16, generator=gen))
    mask = torch.zeros(1, 1, 1, 16)
    mask[..., ::2] = 1
    k = k * mask
    with torch.no_grad():
        small, big = wrapped(k, mask).image, wrapped(k * 37.0, mask).image
        unit = k / me.zero_filled_peak(k)
        assert torch.allclose(wrapped(unit, mask).image, model(unit, mask).image, atol=1e-6)
    # the plain model is not scale-equivariant (biases, ReLU): the wrapper is what makes it so
    assert torch.allclose(big, 37.0 * small, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(model(k * 37.0, mask).image, 37.0 * model(k, mask).image, rtol=1e-3)
    # a model with coil maps: the maps pass through unscaled
    modl = build_model("modl", seed=0, unrolls=1, convs=2, channels=4, in_channels=2, cg_iters=3)
    kc = torch.complex(torch.randn(2, 3, 16, 16, generator=gen), torch.randn(2, 3, 16, 16, generator=gen)) * mask
    maps = torch.complex(torch.randn(2, 3, 16, 16, generator=gen), torch.randn(2, 3, 16, 16, generator=gen))
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    with torch.no_grad():
        scaled = me.SliceScaled(modl).eval()
        torch.testing.assert_close(scaled(kc * 37.0, mask, smaps=maps).image,
                                   37.0 * scaled(kc, mask, smaps=maps).image, rtol=1e-4, atol=1e-5)


def test_smoke_run_writes_rows_table_and_figure(tmp_path, monkeypatch):
    cache = install_stand_ins(tmp_path, monkeypatch)
    folder, _ = measured.prepare_measured(cache_dir=cache, download=_offline)
    mm = _load("measured_models")
    out = tmp_path / "mm"
    monkeypatch.setattr(sys, "argv", ["measured_models.py", "--smoke", "--data", str(folder),
                                      "--runs", str(tmp_path / "runs"), "--out", str(out),
                                      "--sources", "nibabel_anat"])
    mm.main()
    doc = json.loads(out.with_suffix(".json").read_text())
    models = {r["model"] for r in doc["rows"] if r.get("seed") == 42}
    assert models == {f"{m}{s}" for m in ("teacher", "student", "distilled") for s in ("", " (slice scale)")}
    flips = {r["slice"] for r in doc["rows"] if r["volume"] == "pyqmri_vfa" and r["model"] == "distilled"}
    assert flips == set(range(10))
    zf = [r for r in doc["rows"] if r["model"] == "zero-filled" and r["volume"] == "pyqmri_vfa"]
    ceiling = [r for r in doc["rows"] if r["model"] == mm.CEILING and r["volume"] == "pyqmri_vfa"]
    assert len(zf) == len(ceiling) == 10
    # the fully sampled combination is closer to the target than any zero-filled image
    combined = [r for r in doc["rows"] if r["model"] == mm.COMBINED_ZF and r["volume"] == "pyqmri_vfa"]
    assert min(r["psnr"] for r in ceiling) > max(r["psnr"] for r in combined)
    # the distilled student gets exactly the plain student's optimizer steps
    assert doc["runs"]["42"]["distilled"]["stages"][-1]["max_steps"] == doc["steps"]["student"]
    text = out.with_suffix(".md").read_text()
    assert "| CG-SENSE |" in text and "of 1 seeds" in text and doc["machine"]["cpu"] in text
    assert out.with_suffix(".png").stat().st_size > 1000


def test_smoke_run_of_a_model_with_coil_maps(tmp_path, monkeypatch):
    """--family modl: MoDL trains on simulated coils with estimated maps and reads every measured
    coil through the file's maps, on the file's scale and per slice."""
    cache = install_stand_ins(tmp_path, monkeypatch)
    folder, _ = measured.prepare_measured(cache_dir=cache, download=_offline)
    mm = _load("measured_models")
    out = tmp_path / "modl"
    monkeypatch.setattr(sys, "argv", ["measured_models.py", "--smoke", "--family", "modl", "--coils", "4",
                                      "--data", str(folder), "--runs", str(tmp_path / "runs"),
                                      "--out", str(out), "--sources", "nibabel_anat", "--scales", "volume",
                                      "--finetune-epochs", "1"])
    mm.main()
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["family"] == "modl" and doc["coils"] == 4 and doc["finetune_epochs"] == 1
    assert {r["model"] for r in doc["rows"] if r.get("seed") == 42} == \
        {f"{m}{s}" for m in ("teacher", "student", "distilled") for s in ("", " (fine-tuned)")}
    runs = doc["runs"]["42"]
    assert runs["teacher"]["model"]["name"] == "modl"
    # every fine-tuned model starts from its embedded checkpoint, trains on the measured training
    # contrasts only (flip angles 1-3, 5-8), and the distilled one imitates the fine-tuned teacher
    assert runs["distilled (fine-tuned)"]["init"].endswith("seed42-distilled/checkpoints/best.pt")
    assert all(runs[f"{m} (fine-tuned)"]["train_slices"] == 7 for m in ("teacher", "student", "distilled"))
    ft = _load("measured_finetune")
    sets = make_datasets(from_dict(DataConfig, ft.measured_data(folder, "multi", "ratio", 0.08), "data"))
    assert [s for _, s in sets["train"].items()] == [1, 2, 3, 5, 6, 7, 8] and ft.HELD_OUT == (0, 9)
    text = out.with_suffix(".md").read_text()
    assert "MoDL gets all coils" in text and "Held-out contrasts only (flip angles 0, 9" in text
    # again with --reuse and the students' site setting: the finished runs are taken as they are
    # (no seconds recorded); the students fine-tune on 3 labelled contrasts (the distilled one sees
    # the other 4 without targets) for the teacher's fine-tuning steps (1 epoch of 7 contrasts)
    teacher_ft = Path(runs["teacher (fine-tuned)"]["init"]).parents[2] / "seed42-teacher-ft"
    stamp = (teacher_ft / "checkpoints" / "best.pt").stat().st_mtime_ns
    site = tmp_path / "site"
    monkeypatch.setattr(sys, "argv", ["measured_models.py", "--smoke", "--family", "modl", "--coils", "4",
                                      "--data", str(folder), "--runs", str(tmp_path / "runs"),
                                      "--out", str(site), "--sources", "nibabel_anat", "--scales", "volume",
                                      "--finetune-epochs", "1", "--finetune-labeled", "3", "--reuse"])
    mm.main()
    site_runs = json.loads(site.with_suffix(".json").read_text())["runs"]["42"]
    assert all(site_runs[m]["seconds"] is None for m in ("teacher", "student", "teacher (fine-tuned)"))
    assert (teacher_ft / "checkpoints" / "best.pt").stat().st_mtime_ns == stamp
    plain, distilled = site_runs["student (fine-tuned)"], site_runs["distilled (fine-tuned)"]
    assert plain["seconds"] is not None and plain["train_slices"] == distilled["train_slices"] == 3
    assert distilled["undersampled_only_slices"] == 4
    teacher_steps = math.ceil(7 / runs["teacher (fine-tuned)"]["optim"]["batch_size"])
    assert plain["optim"]["epochs"] * math.ceil(3 / plain["optim"]["batch_size"]) >= teacher_steps
    assert distilled["stages"][-1]["max_steps"] == plain["optim"]["epochs"] * math.ceil(3 / plain["optim"]["batch_size"])
    assert (tmp_path / "runs" / "seed42-distilled-ft-3labeled" / "checkpoints" / "best.pt").is_file()
    # a finished run of another config is never taken (nor replaced): the differing key is named
    sys.argv[sys.argv.index("--finetune-epochs") + 1] = "2"
    with pytest.raises(SystemExit, match="--reuse: .*seed42-teacher-ft holds a finished run whose config differs at 'optim"):
        mm.main()
    assert (teacher_ft / "checkpoints" / "best.pt").stat().st_mtime_ns == stamp
    # runs split by seed merge into one table; runs of another setting are refused
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**doc, "seeds": [43], "runs": {"43": runs},
                                 "rows": [{**r, "seed": 43} if r.get("seed") else r for r in doc["rows"]]}))
    monkeypatch.setattr(sys, "argv", ["measured_models.py", "--merge", str(out.with_suffix(".json")), str(other),
                                      "--out", str(tmp_path / "merged")])
    mm.main()
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["seeds"] == [42, 43] and "of 2 seeds" in (tmp_path / "merged.md").read_text()
    other.write_text(json.dumps({**doc, "seeds": [43], "family": "dccnn"}))
    with pytest.raises(SystemExit, match="not the same experiment .* differ in family"):
        mm.main()
