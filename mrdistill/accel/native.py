"""Optional compiled CPU kernels, built on first use with the system's C compiler.

Nothing here is required: where there is no x86-64 CPU with AVX2 + FMA (AVX-512 for the cascade
kernel), no C compiler, or the build fails, `tapconv_kernel()` / `cascade_kernel()` /
`convgrad_kernel()` return None and callers keep their torch path. A kernel is a plain C file in
`mrdistill/accel/kernels/` (no torch headers, so a build takes well under a second), compiled once into
`default_cache_dir()/kernels/<name>-<hash>.so` (the hash covers the source, compiler and flags;
written atomically, so concurrent builds are safe) and called through ctypes, which releases the
GIL, so chunk worker threads run it in parallel. `MRDISTILL_NATIVE=0` turns all kernels off;
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

from mrdistill.atomic import atomic_path, atomic_write_text
from mrdistill.cache import default_cache_dir
from mrdistill.accel.parallel import run_chunks, thread_parts

KERNEL_DIR = Path(__file__).with_name("kernels")
# AVX2 + FMA only (not -march=native): the cached library must run on any x86-64 CPU that has them.
# AVX-512 code is enabled per function (`target` attribute) and only called after a CPU check.
_FLAGS = ("-O3", "-mavx2", "-mfma", "-shared", "-fPIC")
_SIMD_CAPABILITIES = ("AVX2", "AVX512")
# Hidden widths the cascade kernel has register blockings for (kernels/cascade.c, CONV_ROW).
CASCADE_CHANNELS = (16, 32, 64)


def _compiler() -> str | None:
    """The C compiler to use: `$CC`, else `cc`, else `gcc` (None if there is none)."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


# kernel name -> why it is unavailable here (set by `build_kernel` and `_function`)
_PROBLEMS: dict[str, str] = {}


def build_kernel(name: str, cache_dir: Path | None = None) -> ctypes.CDLL | None:
    """Compile (or reuse) `kernels/<name>.c` and load it; None when that is not possible here.
    A failed build keeps the compiler's message in `<library>.log` next to where the library
    would be (`kernel_problem` names it)."""
    compiler = _compiler()
    if compiler is None:
        _PROBLEMS[name] = "no C compiler ($CC, cc or gcc) was found"
        return None
    source = KERNEL_DIR / f"{name}.c"
    key = hashlib.sha1(b"\0".join([source.read_bytes(), compiler.encode(), " ".join(_FLAGS).encode()]))
    library = (cache_dir or default_cache_dir()) / "kernels" / f"{name}-{key.hexdigest()[:12]}.so"
    command = [compiler, *_FLAGS, "-o", str(library), str(source)]
    try:
        if not library.exists():
            with atomic_path(library) as tmp:
                subprocess.run([*command[:-2], str(tmp), str(source)],
                               check=True, capture_output=True, timeout=120)
        return ctypes.CDLL(str(library))
    except (OSError, subprocess.SubprocessError) as exc:
        _PROBLEMS[name] = f"the kernel did not build or load ({_keep_log(library, command, exc)})"
        return None


def _keep_log(library: Path, command: list[str], exc: BaseException) -> str:
    """Write the compiler's command and output to `<library>.log`; the phrase naming it."""
    output = getattr(exc, "stderr", None) or getattr(exc, "stdout", None) or b""
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
    log = library.with_suffix(".log")
    try:
        atomic_write_text(log, " ".join(command) + "\n" + (text or f"{type(exc).__name__}: {exc}") + "\n")
    except OSError:
        return f"{type(exc).__name__}: {exc}"
    return f"compiler output: {log}"


def kernel_problem(name: str) -> str | None:
    """Why kernel `name` is unavailable, in words (None when it is available or not yet asked for)."""
    return _PROBLEMS.get(name)


def simd_available() -> bool:
    """True on an x86-64 CPU with at least AVX2 (FMA comes with it on every such CPU)."""
    return (platform.machine().lower() in ("x86_64", "amd64")
            and torch.backends.cpu.get_cpu_capability() in _SIMD_CAPABILITIES)


def _function(kernel: str, symbol: str, argtypes: list, restype: type | None) -> ctypes._CFuncPtr | None:
    """`symbol` of the built `kernels/<kernel>.c` with its ctypes signature, or None where kernels
    are off (MRDISTILL_NATIVE=0), the CPU has no AVX2, or the build fails."""
    if os.environ.get("MRDISTILL_NATIVE", "1") == "0":
        _PROBLEMS[kernel] = "MRDISTILL_NATIVE=0 turns the compiled kernels off"
        return None
    if not simd_available():
        _PROBLEMS[kernel] = "the CPU has no AVX2 (or is not x86-64)"
        return None
    library = build_kernel(kernel)
    if library is None:
        return None
    fn = getattr(library, symbol)
    fn.argtypes, fn.restype = argtypes, restype
    return fn


@functools.cache
def tapconv_kernel() -> ctypes._CFuncPtr | None:
    """The C function `tapconv3x3_nhwc` (see kernels/tapconv.c), or None where unavailable."""
    return _function("tapconv", "tapconv3x3_nhwc", [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 5, None)


@functools.cache
def cascade_kernel() -> ctypes._CFuncPtr | None:
    """The C function `dccnn_cascade` (see kernels/cascade.c), or None where unavailable (also on a
    CPU without AVX-512, which the library itself checks)."""
    supported = _function("cascade", "cascade_cpu_supported", [], ctypes.c_int)
    if supported is None or not supported():
        return None
    return _function("cascade", "dccnn_cascade", [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 7
                     + [ctypes.c_float] + [ctypes.c_int64] * 3, ctypes.c_int)


@functools.cache
def convgrad_kernel() -> ctypes._CFuncPtr | None:
    """The C function `conv3x3_weight_grad_nhwc` (see kernels/convgrad.c), or None where unavailable."""
    return _function("convgrad", "conv3x3_weight_grad_nhwc", [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 7,
                     None)


def conv3x3_weight_grad_native(x: Tensor, dy: Tensor) -> tuple[Tensor, Tensor] | None:
    """Weight and bias gradients of a 3x3 'same' conv (stride 1, no dilation, one group) with the
    compiled kernel; None if it cannot take the inputs.

    x: float32 (n, C, H, W), the conv's input, dense channels-last, C a multiple of 8;
    dy: float32 (n, Cout, H, W), the gradient of its output, dense channels-last.
    Returns (gw float32 (Cout, C, 3, 3) in channels_last, gb float32 (Cout,)). The rows n * H are
    split over the torch threads (`parallel.run_chunks`; ctypes releases the GIL), each part
    summing into its own buffer; the buffers are added at the end.
    """
    fn = convgrad_kernel()
    n, c, h, w = x.shape
    cout = dy.shape[1]
    if (fn is None or x.dtype != torch.float32 or dy.dtype != torch.float32 or c % 8
            or x.device.type != "cpu" or dy.device.type != "cpu" or dy.shape != (n, cout, h, w)
            or not (is_dense_nhwc(x) and is_dense_nhwc(dy))):
        return None

    def run(part: slice) -> Tensor:  # this part's sums: gw (Cout, 3, 3, C) then gb (Cout,), flat
        sums = torch.zeros(cout * 9 * c + cout)
        fn(x.data_ptr(), dy.data_ptr(), sums.data_ptr(), sums[cout * 9 * c:].data_ptr(), n, h, w, c,
           cout, part.start, part.stop)
        return sums

    total = torch.stack(run_chunks(run, thread_parts(n * h))).sum(0)
    gw, gb = total[:cout * 9 * c].view(cout, 3, 3, c), total[cout * 9 * c:]
    # (Cout, 3, 3, C) memory is the channels_last layout of a (Cout, C, 3, 3) weight.
    return gw.permute(0, 3, 1, 2), gb


def tapconv_native(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor | None:
    """3x3 'same' conv of channels-last x with the compiled kernel; None if it cannot take x.

    x: float32 (n, C, H, W) stored channels-last (strides (H*W*C, 1, W*C, C)), C a multiple of 8;
    weight: float32 contiguous (Cout, 3, 3, C) (or any view of that memory, e.g. (Cout*9, C));
    bias: float32 contiguous (Cout,). Returns float32 (n, Cout, H, W) contiguous.
    """
    fn = tapconv_kernel()
    n, c, h, w = x.shape
    if (fn is None or x.dtype != torch.float32 or c % 8 or x.device.type != "cpu"
            or not is_dense_nhwc(x)):
        return None
    cout = bias.numel()
    out = torch.empty(n, cout, h, w)
    fn(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr(), n, h, w, c, cout)
    return out


def is_dense_nhwc(x: Tensor) -> bool:
    """x (n, C, H, W) lies in memory as a dense (n, H, W, C) array (strides of size-1 dims are free)."""
    n, c, h, w = x.shape
    want = (h * w * c, 1, w * c, c)
    return all(size == 1 or got == exp for size, got, exp in zip(x.shape, x.stride(), want))


def cascade_native(x: Tensor, weights: Tensor, biases: Tensor, *, channels: int, out_channels: int,
                   layers: int, slope: float, residual: bool, rows: tuple[int, int] | None = None,
                   out: Tensor | None = None) -> Tensor | None:
    """All convs of one DC-CNN cascade with the compiled streaming kernel; None if it cannot run.

    x: float32 (n, Cin, H, W) contiguous; weights: float32, the layers' weights flattened and
    concatenated: layer 0 as (3, 3, Cin, channels), the hidden ones as (3, 3, channels, channels),
    the last as (out_channels, 3, 3, channels); biases: float32, the layers' biases concatenated.
    Activation max(v, 0) + slope * min(v, 0) after every conv but the last; `residual` adds x.
    rows (start, stop): compute only these output rows (threads can share a slice: each band
    recomputes layers - 1 rows of halo per side); out: a float32 contiguous (n, out_channels, H, W)
    tensor to write them into. Returns `out` (a new float32 contiguous tensor if not given).
    Raises ValueError for weights or biases of the wrong size or dtype (the kernel would read past
    them), RuntimeError if the kernel cannot allocate its scratch rows.
    """
    fn = cascade_kernel()
    n, cin, h, w = x.shape
    start, stop = rows or (0, h)
    if (fn is None or x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous()
            or channels not in CASCADE_CHANNELS or layers < 2 or (residual and out_channels != cin)
            or not 0 <= start < stop <= h):
        return None
    hidden = 9 * channels * (cin + (layers - 2) * channels)
    if (weights.numel() != hidden + 9 * channels * out_channels
            or biases.numel() != channels * (layers - 1) + out_channels
            or not (weights.dtype == biases.dtype == torch.float32)
            or not (weights.is_contiguous() and biases.is_contiguous())):
        raise ValueError("cascade weights/biases do not match the layer sizes (see the docstring)")
    if out is None:
        out = torch.empty(n, out_channels, h, w)
    elif out.shape != (n, out_channels, h, w) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be float32 contiguous {(n, out_channels, h, w)}")
    code = fn(x.data_ptr(), out.data_ptr(), weights.data_ptr(), biases.data_ptr(), n, h, w, cin,
              channels, out_channels, layers, slope, int(residual), start, stop)
    if code == 2:
        raise RuntimeError("the cascade kernel could not allocate its scratch memory")
    return out if code == 0 else None
