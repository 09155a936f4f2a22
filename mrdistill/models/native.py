"""Optional compiled CPU kernels, built on first use with the system's C compiler.

Nothing here is required: where there is no x86-64 CPU with AVX2 + FMA, no C compiler, or the build
fails, `tapconv_kernel()` returns None and callers keep their pure-torch path. A kernel is a plain C
file in `mrdistill/models/kernels/` (no torch headers, so a build takes well under a second), compiled
once into `default_cache_dir()/kernels/<name>-<hash>.so` (the hash covers the source, compiler and
flags; written atomically, so concurrent builds are safe) and called through ctypes, which releases
the GIL, so chunk worker threads run it in parallel. `MRDISTILL_NATIVE=0` turns all kernels off;
`CC` picks the compiler.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch
from torch import Tensor

from mrdistill.atomic import atomic_path
from mrdistill.cache import default_cache_dir

KERNEL_DIR = Path(__file__).with_name("kernels")
# AVX2 + FMA only (not -march=native): the cached library must run on any x86-64 CPU that has them.
_FLAGS = ("-O3", "-mavx2", "-mfma", "-shared", "-fPIC")
_SIMD_CAPABILITIES = ("AVX2", "AVX512")


def _compiler() -> str | None:
    """The C compiler to use: `$CC`, else `cc`, else `gcc` (None if there is none)."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def build_kernel(name: str, cache_dir: Path | None = None) -> ctypes.CDLL | None:
    """Compile (or reuse) `kernels/<name>.c` and load it; None when that is not possible here."""
    compiler = _compiler()
    if compiler is None:
        return None
    source = KERNEL_DIR / f"{name}.c"
    key = hashlib.sha1(b"\0".join([source.read_bytes(), compiler.encode(), " ".join(_FLAGS).encode()]))
    library = (cache_dir or default_cache_dir()) / "kernels" / f"{name}-{key.hexdigest()[:12]}.so"
    try:
        if not library.exists():
            with atomic_path(library) as tmp:
                subprocess.run([compiler, *_FLAGS, "-o", str(tmp), str(source)],
                               check=True, capture_output=True, timeout=120)
        return ctypes.CDLL(str(library))
    except (OSError, subprocess.SubprocessError):
        return None


def simd_available() -> bool:
    """True on an x86-64 CPU with at least AVX2 (FMA comes with it on every such CPU)."""
    return (platform.machine().lower() in ("x86_64", "amd64")
            and torch.backends.cpu.get_cpu_capability() in _SIMD_CAPABILITIES)


@functools.cache
def tapconv_kernel() -> ctypes._CFuncPtr | None:
    """The C function `tapconv3x3_nhwc` (see kernels/tapconv.c), or None where unavailable."""
    if os.environ.get("MRDISTILL_NATIVE", "1") == "0" or not simd_available():
        return None
    library = build_kernel("tapconv")
    if library is None:
        return None
    fn = library.tapconv3x3_nhwc
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 5
    fn.restype = None
    return fn


def tapconv_native(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor | None:
    """3x3 'same' conv of channels-last x with the compiled kernel; None if it cannot take x.

    x: float32 (n, C, H, W) stored channels-last (strides (H*W*C, 1, W*C, C)), C a multiple of 8;
    weight: float32 contiguous (Cout, 3, 3, C) (or any view of that memory, e.g. (Cout*9, C));
    bias: float32 contiguous (Cout,). Returns float32 (n, Cout, H, W) contiguous.
    """
    fn = tapconv_kernel()
    n, c, h, w = x.shape
    if (fn is None or x.dtype != torch.float32 or c % 8 or x.device.type != "cpu"
            or not _is_dense_nhwc(x)):
        return None
    cout = bias.numel()
    out = torch.empty(n, cout, h, w)
    fn(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr(), n, h, w, c, cout)
    return out


def _is_dense_nhwc(x: Tensor) -> bool:
    """x (n, C, H, W) lies in memory as a dense (n, H, W, C) array (strides of size-1 dims are free)."""
    n, c, h, w = x.shape
    want = (h * w * c, 1, w * c, c)
    return all(size == 1 or got == exp for size, got, exp in zip(x.shape, x.stride(), want))
