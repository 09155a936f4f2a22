"""Export and benchmark settings: the names and defaults that the library (`deploy/`) and the
command line's parser share. Standard library only, so `mrdistill export --help` and
`mrdistill benchmark --help` answer without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

EXPORT_FORMATS = ("onnx", "torchscript")
EXPORT_TOLERANCE = 1e-4  # parity: max abs difference / image max, export vs eager
BACKENDS = ("eager", "fast", "compile", "torchscript", "onnxruntime", "cuda")


@dataclass
class BenchSettings:
    """What is measured: grid, batch, backends, device, rounds, peak matmul size, mask."""

    shape: tuple[int, int]
    batch: int = 1
    backends: list[str] = field(default_factory=lambda: ["eager", "fast", "torchscript", "onnxruntime"])
    device: str = "cpu"
    repeats: int = 7
    matmul_size: int = 2048
    mask_kind: str = "kdmri"
    acceleration: float = 4.0
    coils: int = 1  # simulated coils of the input (multi-coil models: VarNet, MoDL with maps)
