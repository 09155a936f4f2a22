"""`mrdistill export` from the command line: the happy path and every refusal (exit 2, one line,
nothing written)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import run_cli
from tests.deploy.export_cases import VARNET, case_data, write_checkpoint

DCCNN = {"cascades": 1, "convs": 2, "channels": 4}


@pytest.fixture
def ckpt(tmp_path):
    return write_checkpoint(tmp_path / "model.pt", "dccnn", DCCNN, case_data("gaussian2d", image_size=16))


def test_export_defaults_to_the_training_size_and_mask(ckpt, tmp_path, capsys):
    out = tmp_path / "m.ts"
    code, stdout, _ = run_cli(["export", ckpt, "--format", "torchscript", "--out", out], capsys)
    assert code == 0 and out.is_file()
    record = json.loads((tmp_path / "m.ts.json").read_text())
    assert record["grid"] == {"height": 16, "width": 16, "coils": 1}
    assert record["data_consistency"]["form"] == "grid"  # gaussian2d is a 2-D mask
    assert "parity vs eager" in stdout


def one_line_refusal(args, capsys, folder, expect: str) -> None:
    before = sorted(p.name for p in folder.iterdir())
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert err.count("\n") == 1 and expect in err, err
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("extra, expect", [
    (["--shape", "4", "16"], "--shape must be"),
    (["--coils", "2"], "trained on 1-coil k-space"),
    (["--tolerance", "1e-15"], "parity check failed"),
    (["--tolerance", "0"], "--tolerance must be > 0"),
    (["--shape", "16", "5000"], "--shape must be"),
])
def test_bad_options_write_nothing(ckpt, tmp_path, capsys, extra, expect):
    one_line_refusal(["export", ckpt, "--format", "torchscript", "--out", tmp_path / "x.ts", *extra],
                     capsys, tmp_path, expect)


def test_models_that_cannot_be_exported_say_why(tmp_path, capsys):
    swinir = write_checkpoint(tmp_path / "swinir.pt", "swinir", {"embed_dim": 8, "groups": 1, "depth": 1,
                                                                  "heads": 2, "window": 4})
    one_line_refusal(["export", swinir, "--format", "torchscript", "--out", tmp_path / "s.ts",
                      "--shape", "16", "16"], capsys, tmp_path, "swinir cannot be exported")
    sr = write_checkpoint(tmp_path / "vdsr.pt", "vdsr", {"layers": 2, "channels": 4, "scale": 2})
    one_line_refusal(["export", sr, "--format", "onnx", "--out", tmp_path / "v.onnx", "--shape", "16", "16"],
                     capsys, tmp_path, "super-resolution")


def test_missing_export_extra(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    one_line_refusal(["export", ckpt, "--format", "onnx", "--out", tmp_path / "m.onnx"], capsys, tmp_path,
                     "mrdistill[export]")


def test_existing_output_is_kept(ckpt, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_text("mine")
    one_line_refusal(["export", ckpt, "--format", "onnx", "--out", out], capsys, tmp_path, "--overwrite")
    assert out.read_text() == "mine"


def test_the_checkpoint_is_never_the_output_under_any_flag(ckpt, tmp_path, capsys):
    before = ckpt.read_bytes()
    (tmp_path / "link.pt").symlink_to(ckpt)
    (tmp_path / "model.pt.json").write_text("{}")
    for out in (ckpt, tmp_path / "link.pt", tmp_path / "model"):  # the file, a link, FILE.json = it
        if out.name == "model":
            (tmp_path / "model.json").unlink(missing_ok=True)
            (tmp_path / "model.json").hardlink_to(ckpt)
        one_line_refusal(["export", ckpt, "--format", "torchscript", "--out", out, "--overwrite"],
                         capsys, tmp_path, "an input is never overwritten")
    assert ckpt.read_bytes() == before


def test_overwrite_replaces_only_an_earlier_export(ckpt, tmp_path, capsys):
    mine = tmp_path / "thesis.ts"
    mine.write_text("my own file")
    one_line_refusal(["export", ckpt, "--format", "torchscript", "--out", mine, "--overwrite"],
                     capsys, tmp_path, "thesis.ts was not written by mrdistill export")
    assert mine.read_text() == "my own file"
    out = tmp_path / "m.ts"
    args = ["export", ckpt, "--format", "torchscript", "--out", out]
    assert run_cli(args, capsys)[0] == 0
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0 and out.is_file()


def test_varnet_exports_for_its_training_coils_only(tmp_path, capsys):
    """A VarNet trained on 4-coil k-space exports for 4 coils by default (sensitivity network and
    mask inside the graph); any other coil count is refused before anything is written."""
    ckpt = write_checkpoint(tmp_path / "varnet.pt", "varnet", VARNET, case_data("random", 16, coils=4))
    one_line_refusal(["export", ckpt, "--format", "onnx", "--out", tmp_path / "v.onnx", "--coils", "8"],
                     capsys, tmp_path, "--coils 8: the model was trained on 4-coil k-space")
    code, stdout, _ = run_cli(["export", ckpt, "--format", "onnx", "--out", tmp_path / "v.onnx"], capsys)
    assert code == 0 and "parity vs eager" in stdout
    record = json.loads((tmp_path / "v.onnx.json").read_text())
    assert record["grid"] == {"height": 16, "width": 16, "coils": 4}
    assert record["training_data"]["mask"] == {"kind": "random", "acceleration": 4.0, "center_fraction": None,
                                               "center_lines": None, "path": None}
    assert record["model"]["name"] == "varnet" and "E2E-VarNet" in record["data_consistency"]["how"]
