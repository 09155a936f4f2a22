"""The CPU speed ring: compiled kernels, the fast inference path, faster CPU training, and the
process-wide malloc setting. Models do not depend on it; `train`, `deploy` and the CLI call only the
entries below (everything else in this package is internal and may change).

- `optimise_for_inference(model, example_kspace, example_mask)`: a fast CPU inference module
  (DC-CNN: the compiled cascade path; any other model: `EagerInference`, an eval copy under
  no_grad).
- `fast_training(model, enabled)`: a context in which the model's eligible 3x3 convs train through
  oneDNN or the compiled kernels, whichever is faster (channels_last weights on the CPU).
- `channels_last_applies(device)`: where `optim.channels_last: auto` turns that path on.
- `training_kernels_available()`: whether the compiled weight-gradient kernel runs here.
- `retain_freed_memory()`: keep freed memory inside the process (program entries only).

Example (no kernel or compiler needed: without them the torch path runs):

>>> import torch
>>> from mrdistill.accel import optimise_for_inference
>>> from mrdistill.models import build_model
>>> model = build_model("dccnn", cascades=2, convs=3, channels=16, seed=0)
>>> kspace, mask = torch.randn(1, 1, 32, 32, dtype=torch.complex64), torch.ones(1, 1, 1, 32)
>>> fast = optimise_for_inference(model, kspace, mask)
>>> fast(kspace, mask).image.shape
torch.Size([1, 1, 32, 32])
"""

from __future__ import annotations

import torch

from mrdistill.accel.allocator import retain_freed_memory
from mrdistill.accel.fast_inference import EagerInference, optimise_for_inference
from mrdistill.accel.native import convgrad_kernel
from mrdistill.accel.native_conv import native_weight_grad as fast_training

__all__ = ["EagerInference", "channels_last_applies", "fast_training", "optimise_for_inference",
           "retain_freed_memory", "training_kernels_available"]


def training_kernels_available() -> bool:
    """True where the compiled weight-gradient kernel builds and runs (x86-64 with AVX2, a C
    compiler, MRDISTILL_NATIVE not 0); `fast_training` then uses it for the convs it suits."""
    return convgrad_kernel() is not None


def channels_last_applies(device: torch.device) -> bool:
    """Whether `optim.channels_last: auto` trains in channels_last on `device`: on the CPU where
    oneDNN (torch's mkldnn backend) or the compiled kernels run the convs (a DC-CNN training step
    1.2-1.6x faster than NCHW, benchmarks/README.md); elsewhere (GPUs) auto keeps NCHW."""
    return device.type == "cpu" and (torch.backends.mkldnn.is_available() or training_kernels_available())
