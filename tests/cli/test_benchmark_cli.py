"""`mrdistill benchmark` in-process on tiny models, and its refusals (exit 2, one line, nothing
written). Timings are not asserted (speed is measured in benchmarks/, not in tests)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import run_cli
from tests.deploy.export_cases import write_checkpoint

TINY = ["--shape", "16", "16", "--batch", "2", "--repeats", "2", "--matmul-size", "64", "--no-progress"]


def test_teacher_and_student_on_every_cpu_backend(tmp_path, capsys):
    teacher = write_checkpoint(tmp_path / "teacher" / "checkpoints" / "best.pt", "dccnn",
                               {"cascades": 2, "convs": 3, "channels": 8})
    code, out, err = run_cli(["benchmark", "--checkpoint", teacher, "--model", "dccnn", "--set", "cascades=1",
                              "--set", "convs=2", "--set", "channels=4", "--backends",
                              "eager,fast,torchscript,onnxruntime", "--out", tmp_path / "bench", *TINY], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    student = "dccnn(cascades=1,convs=2,channels=4)"
    assert list(report["results"]) == ["teacher", student]
    assert report["models"]["teacher"]["parameters"] > report["models"][student]["parameters"]
    assert report["models"]["teacher"]["flops_per_slice"] == 2 * 9 * (8 + 64 + 8) * 16 * 16 * 2
    for rows in report["results"].values():
        assert set(rows) == {"eager", "fast", "torchscript", "onnxruntime"}
        for row in rows.values():
            assert len(row["seconds_per_call"]) == 2
            assert row["latency_ms"]["p95_batch"] >= row["latency_ms"]["p50_batch"] > 0
            assert row["max_rel_error_vs_eager"] < 1e-4  # every backend computes the same image
            assert row["memory"]["peak_mib"] > 0
    assert set(report["speedup_vs_reference"][student]) == {"eager", "fast", "torchscript", "onnxruntime"}
    assert set(report["speedup_vs_eager"]["teacher"]) == {"fast", "torchscript", "onnxruntime"}
    assert "| teacher | onnxruntime |" in out and "Speed-up of" in out


def test_multicoil_varnet(tmp_path, capsys):
    """--coils gives a VarNet the multi-coil k-space it is built for (it estimates its own maps)."""
    code, out, err = run_cli(["benchmark", "--model", "varnet", "--set", "num_cascades=1", "--set", "chans=2",
                            "--set", "pools=1", "--set", "sens_chans=2", "--set", "sens_pools=1",
                            "--coils", "4", "--backends", "eager", "--out", tmp_path / "bench", *TINY], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    (rows,) = report["results"].values()
    assert rows["eager"]["latency_ms"]["p50_batch"] > 0
    assert report["settings"]["coils"] == 4 and "4 coil(s) per call" in out


def test_unsupported_backends_are_na_and_models_keep_their_order(tmp_path, capsys):
    """A model without an export graph (SwinIR) runs on eager and shows "n/a (why)" for the
    exported backends; a built model given before a checkpoint stays first and is the reference."""
    student = write_checkpoint(tmp_path / "student" / "checkpoints" / "best.pt", "dccnn",
                               {"cascades": 1, "convs": 2, "channels": 4})
    code, out, err = run_cli(["benchmark", "--model", "swinir", "--set", "embed_dim=8", "--set", "groups=1",
                              "--set", "depth=1", "--set", "heads=2", "--set", "window=4",
                              "--checkpoint", student, "--backends", "eager,onnxruntime",
                              "--out", tmp_path / "bench", *TINY], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    swinir = "swinir(embed_dim=8,groups=1,depth=1,heads=2,window=4)"
    assert list(report["models"]) == [swinir, "student"] and report["reference_model"] == swinir
    assert set(report["results"][swinir]) == {"eager"}
    assert "swinir cannot be exported" in report["unavailable"][swinir]["onnxruntime"]
    assert set(report["results"]["student"]) == {"eager", "onnxruntime"}
    assert set(report["speedup_vs_reference"]["student"]) == {"eager"}  # no onnxruntime reference
    assert f"| {swinir} | onnxruntime |" in out and "n/a (swinir cannot be exported" in out
    assert f"Speed-up of student over {swinir} (per backend): eager" in out


def test_varnet_teacher_and_student_on_onnxruntime(tmp_path, capsys):
    """VarNet exports now: teacher and student both run on eager and ONNX Runtime with 4 coils."""
    small = ["--set", "chans=2", "--set", "pools=1", "--set", "sens_chans=2", "--set", "sens_pools=1"]
    code, out, err = run_cli(["benchmark", "--model", "varnet", "--set", "num_cascades=2", *small,
                              "--model", "varnet", "--set", "num_cascades=1", *small, "--coils", "4",
                              "--mask", "random", "--backends", "eager,onnxruntime", "--out", tmp_path / "bench",
                              *TINY], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    teacher, student = report["models"]
    assert teacher.startswith("varnet(num_cascades=2") and report["unavailable"] == {}
    for rows in report["results"].values():
        assert rows["onnxruntime"]["max_rel_error_vs_eager"] < 1e-4
    assert set(report["speedup_vs_reference"][student]) == {"eager", "onnxruntime"}


@pytest.mark.parametrize("extra, expect", [
    (["--backends", "eager,tensorrt"], "unknown backend 'tensorrt'"),
    (["--shape", "4", "16"], "--shape must be"),
    (["--batch", "0"], "--batch must be"),
    (["--coils", "0"], "--coils must be"),
    (["--checkpoint", "x.pt", "--set", "a=1"], "--set must follow a --model"),
    (["--backends", "cuda"], "no CUDA device"),
])
def test_bad_options_write_nothing(tmp_path, capsys, extra, expect):
    if expect == "no CUDA device":
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    code, _, err = run_cli(["benchmark", "--model", "dccnn", "--out", tmp_path / "b", *TINY, *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "b").exists()


def test_missing_export_extra_for_onnxruntime(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = run_cli(["benchmark", "--model", "dccnn", "--backends", "onnxruntime", "--out",
                            tmp_path / "b", *TINY], capsys)
    assert code == 2 and "mrdistill[export]" in err
    assert not (tmp_path / "b").exists()
