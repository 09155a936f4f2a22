"""A fast CPU inference path for reconstruction models (DC-CNN in particular).

Fast path (`optimise_for_inference`): for `DCCNN` an `InferenceDCCNN` snapshot that
- runs every conv that has many output channels through oneDNN with weights reordered (prepacked) once
  and bias + ReLU/LeakyReLU fused into the conv (`torch.ops.mkldnn._convolution_pointwise`), on
  channels_last activations, so there is no per-call weight reorder and no separate activation pass;
- computes the narrow last conv of a cascade (32 -> 1 or 2 channels, slow in oneDNN) with a small
  compiled AVX2 kernel (`mrdistill.models.native`, built on first use) or, where that is unavailable,
  as one matmul producing the 9 taps per output channel, followed by 9 shifted in-place adds;
- replaces the DC step for 1-D column masks by one matmul per cascade: with the orthonormal centred
  FFT, the transform along H cancels, so DC(x) = x @ (I - a G) + a b, where
  G = ifft1c(m * fft1c(I)) acts on image rows, b = ifft2c(m * k0) (once per forward), and
  a = 1 (hard DC) or lam / (1 + lam) (soft DC); 2-D masks use the eager FFT-based DC;
- processes the batch in chunks small enough that activations stay below glibc's mmap threshold
  (allocations above ~32 MiB are mmapped and page-faulted afresh on every call) and, with several
  intra-op threads, runs the chunks on separate threads (`run_chunks`).
Everything else (any other model, or a fast path that fails its check against eager) falls back to
an eager copy in `eval()` mode under `torch.no_grad()`. `tune_malloc_for_inference()` (opt-in, process
wide) also stops glibc from handing freed activations back to the OS between calls.
Measurements and what else was tried: benchmarks/README.md, benchmarks/results/inference.md.
"""
from __future__ import annotations

import copy
import ctypes
import ctypes.util
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 - the usual alias

from mrdistill.models.base import ReconOutput
from mrdistill.models.dccnn import DCCNN
from mrdistill.models.native import tapconv_kernel, tapconv_native
from mrdistill.physics.column_dc import column_dc, column_dc_operators, column_rows
from mrdistill.physics.consistency import dc_network_image
from mrdistill.physics.fft import ifft2c, image_to_network

# Keep one activation tensor of a chunk below this: glibc serves allocations up to its dynamic mmap
# threshold (max 32 MiB) from the heap and reuses them; larger ones are fresh mmaps whose page faults
# cost as much as a conv layer on these machines. Smaller chunks also keep the memory-bound layers
# (first conv, tap conv, DC) closer to the cache. Measured at 256^2 (32 channels, 8 MiB per slice),
# 1 thread, 9 interleaved rounds: chunks of 1 slice are 10 % faster than 2 for the teacher and 13 %
# for the student (teacher/student 2.54x vs 2.36x); 4 (32 MiB) is 20 % slower than 2.
DEFAULT_CHUNK_BYTES = 8 * 2**20
# Output channels up to which a conv runs as "taps matmul + shifted adds" instead of oneDNN.
_TAP_CONV_MAX_OUT = 4


def optimise_for_inference(
    model: nn.Module,
    example_kspace: Tensor,
    example_mask: Tensor,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    rtol: float = 1e-4,
) -> nn.Module:
    """A fast CPU inference module equivalent to `model(kspace, mask)` (images only, no features).

    The fast path covers `DCCNN` on CPU (any activation, residual, hard/soft DC, real or complex
    input); any other model or device gets the eager fallback.

    example_kspace: complex64 (N, C, H, W) and example_mask (N|1, 1, 1|H, W): the shapes to tune for
    (only H, W and the channel count matter; any batch size works later). The result is a snapshot of
    the current weights: `model` itself (parameters, state_dict, train/eval mode) is not changed, and
    no RNG is used. The fast path is checked against eager on the first example slice; if the max
    abs difference exceeds `rtol * max|eager|` (or it cannot be built), a warning is issued and an
    eager copy is returned instead. Returns an `nn.Module` whose
    forward(kspace, mask) -> ReconOutput(image float32 (N, C_net, H, W), features {}).
    """
    on_cpu = all(p.device.type == "cpu" for p in model.parameters()) and example_kspace.device.type == "cpu"
    if isinstance(model, DCCNN) and on_cpu:
        try:
            fast = InferenceDCCNN(model, example_kspace, chunk_bytes=chunk_bytes)
            error = _relative_error(model, fast, example_kspace[:1], _first_mask(example_mask))
        except (RuntimeError, NotImplementedError) as exc:  # e.g. an unsupported layer
            warnings.warn(f"fast DC-CNN path unavailable ({exc}); using eager inference", stacklevel=2)
        else:
            if error <= rtol:
                return fast
            warnings.warn(f"fast DC-CNN path differs from eager by {error:.2e} (> {rtol:.0e}); "
                          "using eager inference", stacklevel=2)
    return EagerInference(model)


class EagerInference(nn.Module):
    """Fallback: an `eval()` copy of the model run under `torch.no_grad()` (the original is untouched)."""

    description = "eager (eval copy, no_grad)"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def forward(self, kspace: Tensor, mask: Tensor) -> ReconOutput:
        """kspace complex64 (N, C, H, W), mask (N|1, 1, 1|H, W) -> ReconOutput without features."""
        with torch.no_grad():
            return ReconOutput(self.model(kspace, mask).image, {})


# ---------------------------------------------------------------- convolutions


def _activation_attr(act: nn.Module | None) -> tuple[str, list[float | None]]:
    """oneDNN post-op name and scalars for the activation that follows a conv."""
    if act is None:
        return "none", [None]
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", [float(act.negative_slope)]
    if isinstance(act, nn.ReLU):
        return "relu", [None]
    raise NotImplementedError(f"no fused form for activation {type(act).__name__}")


class FusedConv(nn.Module):
    """Conv2d (+ activation) with weights reordered once for oneDNN and the activation fused.

    forward: float (n, Cin, H, W) (any memory format; channels_last is fastest) ->
    float (n, Cout, H', W') in channels_last. Where the oneDNN ops are missing (a torch build without
    them), it runs F.conv2d on channels_last tensors and the activation in place instead.
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None, example_shape: tuple[int, ...]) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise NotImplementedError("FusedConv needs numeric zero padding")
        self.geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.weight = conv.weight.detach().clone().contiguous(memory_format=torch.channels_last)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()
        self.act = act
        self.attr, self.scalars = _activation_attr(act)
        try:
            # A plain attribute, not a buffer: the packed tensor is an opaque oneDNN tensor.
            self.packed: Tensor | None = _pack_weight(self.weight, self.geometry, example_shape)
        except (RuntimeError, AttributeError, NotImplementedError):
            self.packed = None

    def forward(self, x: Tensor) -> Tensor:
        padding, stride, dilation, groups = self.geometry
        x = x.contiguous(memory_format=torch.channels_last)
        if self.packed is not None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.packed, self.bias, padding, stride, dilation, groups, self.attr, self.scalars, "")
        y = F.conv2d(x, self.weight, self.bias, stride, padding, dilation, groups)
        if isinstance(self.act, nn.LeakyReLU):
            return F.leaky_relu_(y, self.act.negative_slope)
        return y if self.act is None else F.relu_(y)


def _pack_weight(weight: Tensor, geometry: tuple, example_shape: tuple[int, ...]) -> Tensor:
    """oneDNN's reorder of a conv weight into its blocked layout for inputs of `example_shape`,
    checked with one call (raises RuntimeError/AttributeError where oneDNN is unavailable)."""
    packed = torch.ops.mkldnn._reorder_convolution_weight(weight, *geometry, list(example_shape))
    probe = torch.zeros(1, weight.shape[1] * geometry[3], 4, 4).contiguous(memory_format=torch.channels_last)
    torch.ops.mkldnn._convolution_pointwise(probe, packed, None, *geometry, "none", [None], "")
    return packed


class TapConv(nn.Module):
    """3x3, stride 1, padding 1 conv to few output channels, without oneDNN.

    oneDNN has no efficient kernel for Cout = 1..2 (it costs as much as Cout = 16). Where the compiled
    kernel is available (`native.tapconv_kernel`, AVX2) it computes the conv in one pass over the
    channels-last input. Otherwise taps = W (Cout*9, Cin) @ x^T (Cin, n*H*W) streams the input once at
    matmul speed, and the output is the sum of the 9 tap planes, each shifted by its kernel offset
    (zero padding = skipped edges).
    forward: float (n, Cin, H, W), channels_last preferred -> float (n, Cout, H, W) contiguous for
    Cout = 1 (a permuted view otherwise).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not _is_same_3x3(conv):
            raise NotImplementedError("TapConv needs a 3x3 conv with stride 1, padding 1, no groups")
        self.cout = conv.out_channels
        # Rows ordered (out channel, ky, kx) so that taps[c, 3*ky + kx] is one plane.
        # A contiguous copy: for Cout = 1 the reshape is a strided view, and clone() would keep it.
        weight = conv.weight.detach().permute(0, 2, 3, 1).reshape(self.cout * 9, -1)
        self.weight = weight.clone(memory_format=torch.contiguous_format)
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(self.cout)
        self.bias = bias.view(self.cout, 1, 1, 1)
        self.use_native = tapconv_kernel() is not None and self.weight.dtype == torch.float32

    def forward(self, x: Tensor) -> Tensor:
        if self.use_native:  # the compiled kernel reads x once, straight from its NHWC rows
            out = tapconv_native(x, self.weight, self.bias.view(-1))
            if out is not None:
                return out
        n, cin, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, cin)  # a view when x is channels_last
        taps = torch.mm(self.weight, rows.t()).view(self.cout, 9, n, h, w)
        out = taps[:, 4] + self.bias  # centre tap (ky = kx = 1) covers every pixel
        for t in (0, 1, 2, 3, 5, 6, 7, 8):
            dy, dx = t // 3 - 1, t % 3 - 1
            # out[y, x] += taps[t][y + dy, x + dx] wherever the source pixel lies inside the image
            out[:, :, _dst(dy, h), _dst(dx, w)] += taps[:, t, :, _src(dy, h), _src(dx, w)]
        return out.permute(1, 0, 2, 3)


def _is_same_3x3(conv: nn.Conv2d) -> bool:
    """True for a 'same' 3x3 conv (stride 1, padding 1, dilation 1, zeros, no groups)."""
    return (tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and conv.groups == 1 and conv.padding_mode == "zeros")


def _dst(shift: int, size: int) -> slice:
    """Output indices that have a source pixel at offset `shift` inside [0, size)."""
    return slice(max(0, -shift), size - max(0, shift))


def _src(shift: int, size: int) -> slice:
    """Source indices (output index + shift) matching `_dst(shift, size)`."""
    return slice(max(0, shift), size + min(0, shift))


def _cascade_layers(cascade: nn.Module, example_shape: tuple[int, ...]) -> nn.ModuleList:
    """The fast layers of one `Cascade`: FusedConv (+activation) for all convs, TapConv for the last
    one when it is narrow (DC-CNN's 32 -> 1|2)."""
    convs = list(cascade.convs)
    layers: list[nn.Module] = []
    shape = example_shape
    for j, conv in enumerate(convs):
        last = j == len(convs) - 1
        if last and conv.out_channels <= _TAP_CONV_MAX_OUT and _is_same_3x3(conv):
            layers.append(TapConv(conv))
        else:
            layers.append(FusedConv(conv, None if last else cascade.act, shape))
        shape = (shape[0], conv.out_channels, *shape[2:])
    return nn.ModuleList(layers)


# ---------------------------------------------------------------- the model


class InferenceDCCNN(nn.Module):
    """Inference-only snapshot of a `DCCNN` (see the module docstring for what makes it fast).

    forward(kspace complex64 (N, C, H, W), mask (N|1, 1, 1|H, W)) ->
    ReconOutput(image float32 (N, C_net, H, W), features {}); equal to the eager model's image up to
    float32 rounding. Weights are copied at construction: later training of the source model is not
    seen. Features (`return_features=True`) are not available here: use the eager model.
    """

    def __init__(self, model: DCCNN, example_kspace: Tensor, *,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        super().__init__()
        _, _, h, w = example_kspace.shape
        self.complex_input = model.complex_input
        self.residual = model.residual
        c_net = 2 if self.complex_input else 1
        widest = max(conv.out_channels for cascade in model.cascades for conv in cascade.convs)
        # Chunk so that one activation (chunk, widest, H, W) float32 stays under chunk_bytes.
        self.chunk = max(1, chunk_bytes // (widest * h * w * 4))
        example_shape = (self.chunk, c_net, h, w)
        self.cascades = nn.ModuleList(_cascade_layers(c, example_shape) for c in model.cascades)
        lambdas = None if model.lambdas is None else model.lambdas.detach().double().tolist()
        # a = lam / (1 + lam) per cascade (soft DC); hard DC is a = 1.
        self.scales = [1.0] * len(model.cascades) if lambdas is None else [lam / (1 + lam) for lam in lambdas]
        self.lambdas = None if model.lambdas is None else model.lambdas.detach().clone()
        self._dc_cache: tuple[Tensor, list[Tensor]] | None = None
        fused = all(layer.packed is not None for layers in self.cascades for layer in layers
                    if isinstance(layer, FusedConv))
        conv = "oneDNN prepacked conv+activation" if fused else "F.conv2d + in-place activation"
        native = any(isinstance(layer, TapConv) and layer.use_native for layers in self.cascades
                     for layer in layers)
        tap = "compiled AVX2 last conv" if native else "tap-matmul last conv"
        self.description = (f"{conv} (channels_last), {tap}, "
                            f"column-mask DC as matmul, chunks of {self.chunk}")

    def forward(self, kspace: Tensor, mask: Tensor, *, return_features: bool = False) -> ReconOutput:
        if return_features:
            raise ValueError("InferenceDCCNN returns no features; run the eager model for them")
        n, _, _, w = kspace.shape
        per_slice_mask = mask.dim() == 4 and mask.shape[0] == n and n > 1
        with torch.no_grad():
            rows = column_rows(mask, n, w)
            ops = None if rows is None else self._dc_operators(rows)

            def run(part: slice) -> Tensor:
                chunk_ops = None if ops is None else [_take(op, part) for op in ops]
                return self._forward_chunk(kspace[part], mask[part] if per_slice_mask else mask,
                                           None if rows is None else _take(rows, part), chunk_ops)

            parts = run_chunks(run, [slice(s, s + self.chunk) for s in range(0, n, self.chunk)])
        image = parts[0] if len(parts) == 1 else torch.cat(parts)
        return ReconOutput(image, {})

    def _dc_operators(self, rows: Tensor) -> list[Tensor]:
        """`column_dc_operators` for these mask rows, cached for the last distinct rows (masks are
        usually reused across calls, and building costs two W x W FFTs per mask)."""
        if self._dc_cache is None or not torch.equal(self._dc_cache[0], rows):
            self._dc_cache = (rows.clone(), column_dc_operators(rows, self.scales, self.complex_input))
        return self._dc_cache[1]

    def _forward_chunk(self, k0: Tensor, mask: Tensor, rows: Tensor | None,
                       ops: list[Tensor] | None) -> Tensor:
        """k0 complex64 (n, C, H, W), mask broadcastable, rows (1|n, W) and per cascade DC matrices
        (None for 2-D masks) -> float32 (n, C_net, H, W)."""
        x = image_to_network(ifft2c(k0), self.complex_input)
        if rows is not None:
            # b = ifft2c(m k0), the image of the acquired samples; real mode keeps its real part.
            m = rows[:, None, None, :]
            b = ifft2c(m * k0)
            b = b if self.complex_input else b.real.contiguous()
        for i, layers in enumerate(self.cascades):
            out = x
            for layer in layers:
                out = layer(out)
            if self.residual:
                out = x + out
            if ops is not None:
                a = self.scales[i]
                x = column_dc(out, ops[i], b if a == 1.0 else a * b, self.complex_input)
            else:  # 2-D mask: the eager FFT-based DC
                lam = None if self.lambdas is None else self.lambdas[i]
                x = dc_network_image(out.contiguous(), k0, mask, self.complex_input, lam)
        return x


# ---------------------------------------------------------------- parallelism


def run_chunks(run: Callable[[slice], Tensor], parts: list[slice]) -> list[Tensor]:
    """`[run(p) for p in parts]`, spread over the intra-op threads as independent chunk workers.

    With T = torch.get_num_threads() > 1 and several chunks, min(T, chunks) Python threads each run
    every k-th chunk with T // workers intra-op threads of their own (torch ops release the GIL).
    Slices are independent, so this is exact; it beats one T-thread pool because the memory-bound
    layers (first conv, tap conv, DC) of a chunk then stay on one core and its cache: measured at
    256^2 with 2 threads, 39 % faster for the student and 17 % for the teacher. The global thread
    count is restored afterwards; threads that other code starts meanwhile may see T // workers.
    """
    threads = torch.get_num_threads()
    workers = min(threads, len(parts))
    if workers <= 1:
        return [run(p) for p in parts]

    def worker(first: int) -> list[Tensor]:
        torch.set_num_threads(threads // workers)  # this thread's OpenMP/MKL pools
        with torch.no_grad():  # grad mode is per thread; workers do not inherit the caller's
            return [run(p) for p in parts[first::workers]]

    try:
        with ThreadPoolExecutor(workers) as pool:
            done = [f.result() for f in [pool.submit(worker, i) for i in range(workers)]]
    finally:
        torch.set_num_threads(threads)
    # Worker i computed parts i, i + workers, ...: interleave back into the original order.
    return [done[i % workers][i // workers] for i in range(len(parts))]


# ---------------------------------------------------------------- process settings

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def tune_malloc_for_inference(keep_bytes: int = 2**30) -> bool:
    """Opt-in, process-wide: stop glibc from returning freed activations to the OS (Linux/glibc only).

    By default glibc trims the heap top once more than ~2x its mmap threshold is free and mmaps blocks
    over the threshold afresh, so every forward re-faults its activations page by page (13-21 % of
    the CPU time of `InferenceDCCNN` at 256^2 on a busy 2-core VM, and more for eager). This raises the trim
    threshold to `keep_bytes` and pins the mmap threshold at glibc's maximum (32 MiB). The process
    then keeps up to `keep_bytes` of freed memory. Returns False where mallopt is unavailable.
    Never called implicitly: it changes the whole process, not just one model.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, int(keep_bytes)) and mallopt(_M_MMAP_THRESHOLD, 32 * 2**20))


# ---------------------------------------------------------------- checks


def _take(t: Tensor, part: slice) -> Tensor:
    """The batch slice `part` of t (1|n, ...); a shared leading dim of 1 is kept as is."""
    return t if t.shape[0] == 1 else t[part]


def _first_mask(mask: Tensor) -> Tensor:
    """The mask for the first slice of a batch (a shared mask is returned as is)."""
    return mask[:1] if mask.dim() == 4 else mask


def _relative_error(model: nn.Module, fast: nn.Module, kspace: Tensor, mask: Tensor) -> float:
    """max |fast - eager| / max |eager| on one batch; the eager model runs as is under no_grad."""
    with torch.no_grad():
        ref = model(kspace, mask).image
        out = fast(kspace, mask).image
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
