"""A fast CPU inference path for reconstruction models (DC-CNN in particular).

Fast path (`optimise_for_inference`): for `DCCNN` an `InferenceDCCNN` snapshot that
- runs all convs of a cascade in one call to a compiled AVX-512 kernel that streams over image rows
  (`fast_layers.NativeCascade`, `mrdistill.accel.native`, built on first use), so hidden activations
  stay in cache; where that kernel is unavailable (no AVX-512, no C compiler, `native=False`), conv
  by conv (`fast_layers.LayerCascade`): oneDNN with weights reordered (prepacked) once and
  bias + ReLU/LeakyReLU fused (`torch.ops.mkldnn._convolution_pointwise`) on channels_last
  activations, and the narrow last conv (32 -> 1 or 2 channels, slow in oneDNN) by a compiled AVX2
  kernel or as one matmul producing the 9 taps per output channel plus 9 shifted in-place adds;
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

import torch
from torch import Tensor, nn

from mrdistill.models.base import ReconOutput
from mrdistill.models.dccnn import DCCNN
from mrdistill.accel.fast_layers import FusedConv, LayerCascade, NativeCascade, TapConv
from mrdistill.accel.parallel import run_chunks
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


def has_fast_path(model: nn.Module) -> bool:
    """Whether `optimise_for_inference` has a fast CPU path for `model`: single-coil DC-CNNs (the
    SENSE form, `coil_maps=True`, runs eager)."""
    return isinstance(model, DCCNN) and not model.accepts_smaps


def optimise_for_inference(
    model: nn.Module,
    example_kspace: Tensor,
    example_mask: Tensor,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    rtol: float = 1e-4,
    native: bool = True,
) -> nn.Module:
    """A fast CPU inference module equivalent to `model(kspace, mask)` (images only, no features).

    The fast path covers `DCCNN` on CPU (any activation, residual, hard/soft DC, real or complex
    input); any other model or device gets the eager fallback. `native=False` keeps the fast path
    on torch/oneDNN only (no compiled kernels), as on a machine without a C compiler.

    example_kspace: complex64 (N, C, H, W) and example_mask (N|1, 1, 1|H, W): the shapes to tune for
    (only H, W and the channel count matter; any batch size works later). The result is a snapshot of
    the current weights: `model` itself (parameters, state_dict, train/eval mode) is not changed, and
    no RNG is used. The fast path is checked against eager on the first example slice; if the max
    abs difference exceeds `rtol * max|eager|` (or it cannot be built), a warning is issued and an
    eager copy is returned instead. Returns an `nn.Module` whose
    forward(kspace, mask) -> ReconOutput(image float32 (N, C_net, H, W), features {}).
    """
    on_cpu = all(p.device.type == "cpu" for p in model.parameters()) and example_kspace.device.type == "cpu"
    if has_fast_path(model) and on_cpu:
        try:
            fast = InferenceDCCNN(model, example_kspace, chunk_bytes=chunk_bytes, native=native)
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


# ---------------------------------------------------------------- the model


class InferenceDCCNN(nn.Module):
    """Inference-only snapshot of a `DCCNN` (see the module docstring for what makes it fast).

    forward(kspace complex64 (N, C, H, W), mask (N|1, 1, 1|H, W)) ->
    ReconOutput(image float32 (N, C_net, H, W), features {}); equal to the eager model's image up to
    float32 rounding. Weights are copied at construction: later training of the source model is not
    seen. Features (`return_features=True`) are not available here: use the eager model.
    """

    def __init__(self, model: DCCNN, example_kspace: Tensor, *,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, native: bool = True) -> None:
        super().__init__()
        _, _, h, w = example_kspace.shape
        self.complex_input = model.complex_input
        c_net = 2 if self.complex_input else 1
        widest = max(conv.out_channels for cascade in model.cascades for conv in cascade.convs)
        # Chunk so that one activation (chunk, widest, H, W) float32 stays under chunk_bytes.
        self.chunk = max(1, chunk_bytes // (widest * h * w * 4))
        example_shape = (self.chunk, c_net, h, w)
        streamed = native and all(NativeCascade.fits(c) for c in model.cascades)
        self.cascades = nn.ModuleList(
            NativeCascade(c, model.residual) if streamed
            else LayerCascade(c, model.residual, example_shape, native) for c in model.cascades)
        lambdas = None if model.lambdas is None else model.lambdas.detach().double().tolist()
        # a = lam / (1 + lam) per cascade (soft DC); hard DC is a = 1.
        self.scales = [1.0] * len(model.cascades) if lambdas is None else [lam / (1 + lam) for lam in lambdas]
        self.lambdas = None if model.lambdas is None else model.lambdas.detach().clone()
        self._dc_cache: tuple[Tensor, list[Tensor]] | None = None
        self.description = f"{self._conv_description()}, column-mask DC as matmul, chunks of {self.chunk}"

    def _conv_description(self) -> str:
        """How the convs run, for benchmark tables."""
        if isinstance(self.cascades[0], NativeCascade):
            return "compiled AVX-512 cascade (all convs in one pass over rows)"
        layers = [layer for cascade in self.cascades for layer in cascade.layers]
        fused = all(layer.packed is not None for layer in layers if isinstance(layer, FusedConv))
        conv = "oneDNN prepacked conv+activation" if fused else "F.conv2d + in-place activation"
        native = any(isinstance(layer, TapConv) and layer.use_native for layer in layers)
        return f"{conv} (channels_last), {'compiled AVX2' if native else 'tap-matmul'} last conv"

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
        for i, cascade in enumerate(self.cascades):
            out = cascade(x)
            if ops is not None:
                a = self.scales[i]
                x = column_dc(out, ops[i], b if a == 1.0 else a * b, self.complex_input)
            else:  # 2-D mask: the eager FFT-based DC
                lam = None if self.lambdas is None else self.lambdas[i]
                x = dc_network_image(out.contiguous(), k0, mask, self.complex_input, lam)
        return x


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
