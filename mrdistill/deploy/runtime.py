"""Running exported files: an ONNX Runtime session (optional `export` extra, imported lazily) and
a TorchScript module, both called with the graph's float32 inputs and returning (image, raw)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mrdistill.errors import MrdistillError

EXTRA_MESSAGE = ("ONNX export and the onnxruntime backend need the optional `export` extra "
                 "(onnx, onnxscript, onnxruntime): pip install 'mrdistill[export]'")
INPUT_NAMES = ("kspace", "mask", "smaps")
OUTPUT_NAMES = ("image", "raw")
Runner = Callable[..., tuple[Tensor, Tensor]]


def require_export_extra() -> None:
    """`MrdistillError` with install advice unless onnx and onnxruntime import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise MrdistillError(EXTRA_MESSAGE) from None


def onnx_runner(path: str | Path, threads: int | None = None) -> Runner:
    """A callable running the ONNX file on CPU in ONNX Runtime: float32 tensors in, tensors out.
    threads: intra-op threads (default: torch's current setting, so backends compare fairly)."""
    require_export_extra()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # No spinning after a run: idle ORT threads would otherwise busy-wait on cores that the next
    # timed candidate (eager torch, another session) needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*args: Tensor) -> tuple[Tensor, Tensor]:
        feed = {name: np.ascontiguousarray(a.detach().cpu().numpy()) for name, a in zip(names, args)}
        image, raw = session.run(list(OUTPUT_NAMES), feed)
        return torch.from_numpy(image), torch.from_numpy(raw)

    return run


def torchscript_runner(path: str | Path) -> Runner:
    """A callable running the TorchScript file (`torch.jit.load`) under `torch.no_grad()`."""
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(*args: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            image, raw = module(*args)
        return image, raw

    return run
