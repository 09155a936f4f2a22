"""Every exportable model variant in both formats, against eager at batch sizes 1 and 3.

ONNX files run in ONNX Runtime in a separate Python process in which `import torch` fails (one
process for all files); TorchScript files are loaded with `torch.jit.load` alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mrdistill.deploy.export import export_checkpoint
from mrdistill.models.contract import declared
from mrdistill.deploy.graphs import exportable_models
from mrdistill.deploy.inputs import example_batch
from mrdistill.physics.fft import magnitude
from mrdistill.train.checkpoint import load_model
from tests.deploy.export_cases import CASES, H, W, case_data, write_checkpoint

# Runs in a fresh interpreter: torch is made unimportable before anything else is imported.
ORT_SCRIPT = """
import sys
sys.modules["torch"] = None
import json
import numpy as np
import onnxruntime as ort
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch was importable")
for job in json.load(open(sys.argv[1])):
    session = ort.InferenceSession(job["model"], providers=["CPUExecutionProvider"])
    feed = {name: np.load(path) for name, path in job["inputs"].items()}
    image, raw = session.run(["image", "raw"], feed)
    np.save(job["out"], image)
assert sys.modules["torch"] is None
"""


def export_case(root: Path, case: str) -> dict:
    """Export one case in both formats; eager images and graph inputs at batch sizes 1 and 3."""
    name, kwargs, coils, kind = CASES[case]
    ckpt = write_checkpoint(root / f"{case}.pt", name, kwargs, case_data(kind, coils=coils))
    model = load_model(ckpt)
    batch = example_batch(3, H, W, coils, declared(model).complex_input, kind, 4.0)
    files = {fmt: export_checkpoint(ckpt, fmt, root / f"{case}.{fmt}", shape=(H, W), coils=coils)
             for fmt in ("onnx", "torchscript")}
    batches = {}
    with_smaps = coils > 1 and getattr(model, "accepts_smaps", False)  # MoDL combining with coil maps
    for n in (1, 3):
        args = [a[:n] for a in batch.graph_args(with_smaps)]
        kw = {k: v[:n] for k, v in batch.eager_kwargs(with_smaps).items()}
        with torch.no_grad():
            eager = magnitude(model(batch.kspace[:n], batch.mask[:n], **kw).image)
        batches[n] = {"eager": eager, "args": args}
    return {"files": files, "batches": batches, "model": model}


def run_onnx_without_torch(root: Path, model: Path, batches: dict) -> dict[int, torch.Tensor]:
    """ONNX Runtime in a fresh interpreter where torch cannot be imported -> image per batch size."""
    jobs = []
    for n, run in batches.items():
        inputs = {}
        for name, a in zip(["kspace", "mask", "smaps"], run["args"]):
            inputs[name] = str(root / f"{n}-{name}.npy")
            np.save(inputs[name], a.numpy())
        jobs.append({"model": str(model), "inputs": inputs, "out": str(root / f"{n}-ort.npy")})
    (root / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, "-c", ORT_SCRIPT, str(root / "jobs.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {n: torch.from_numpy(np.load(root / f"{n}-ort.npy")) for n in batches}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("case", list(CASES))
def test_export_both_formats_match_eager(tmp_path, case):
    """ONNX (torch-free ONNX Runtime process) and TorchScript (torch.jit.load alone) at batch
    sizes 1 and 3, the sidecar and the ONNX metadata."""
    import onnx

    out = export_case(tmp_path, case)
    ort_images = run_onnx_without_torch(tmp_path, out["files"]["onnx"].path, out["batches"])
    module = torch.jit.load(str(out["files"]["torchscript"].path))
    for n, run in out["batches"].items():
        assert ort_images[n].shape == run["eager"].shape == (n, 1, H, W)
        assert rel(ort_images[n], run["eager"]) < 1e-4
        with torch.no_grad():
            image, _ = module(*run["args"])
        assert rel(image, run["eager"]) < 1e-4

    name, kwargs, coils, kind = CASES[case]
    result = out["files"]["onnx"]
    record = json.loads(result.sidecar_path.read_text())
    assert record["model"] == {"name": name, "kwargs": kwargs}
    assert record["training_data"]["mask_kind"] == kind
    assert record["training_data"]["from"] == "the checkpoint's data record"
    assert record["training_data"]["mask"]["kind"] == kind and record["training_data"]["coils"] == coils
    assert record["data_consistency"]["form"] == ("grid" if kind == "gaussian2d" else "column")
    assert record["grid"] == {"height": H, "width": W, "coils": coils}
    assert len(record["checkpoint"]["sha256"]) == 64
    assert 0 <= record["parity"]["max_abs_diff_relative_to_image_max"] <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(meta["mrdistill"]) == record


@pytest.mark.parametrize("case", ["dccnn-real-hard-column", "varnet-multicoil-column"])
def test_one_mask_for_the_whole_batch(tmp_path, case):
    """A mask with batch 1 broadcasts over a batch of 3 (one mask per volume)."""
    out = export_case(tmp_path, case)
    args = out["batches"][3]["args"]
    module = torch.jit.load(str(out["files"]["torchscript"].path))
    kspace, mask = args[0], args[1][:1]
    with torch.no_grad():
        eager = magnitude(out["model"](torch.view_as_complex(kspace.contiguous()), mask).image)
        image, _ = module(kspace, mask)
    assert rel(image, eager) < 1e-4


def test_every_exportable_model_has_a_case():
    """Registry-wide: each registered model with an export graph is exported and parity-checked
    above (a new exportable model without a case fails here)."""
    assert set(exportable_models()) == {name for name, *_ in CASES.values()}
    assert {"varnet", "unet"} <= set(exportable_models()) and "swinir" not in exportable_models()


@pytest.mark.parametrize("fft, op", [("operator", "DFT"), ("matmul", "MatMul")])
def test_varnet_with_either_fft(tmp_path, fft, op):
    """Both 2-D transforms of the VarNet graph pass parity at export; the ONNX files hold ONNX's
    DFT operator or only matmuls."""
    import onnx

    name, kwargs, coils, kind = CASES["varnet-multicoil-column"]
    ckpt = write_checkpoint(tmp_path / "v.pt", name, kwargs, case_data(kind, coils=coils))
    result = export_checkpoint(ckpt, "onnx", tmp_path / "v.onnx", shape=(H, W), fft=fft)
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert op in ops and (("DFT" in ops) == (fft == "operator"))
    assert result.parity <= 1e-4
    assert ("DFT operator" in result.record["data_consistency"]["how"]) == (fft == "operator")
