"""Training convs with the compiled weight gradient: the same gradients as autograd's conv backward
(to float rounding), only where the kernel can take the tensors, and nothing left behind."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from mrdistill.accel import native
from mrdistill.errors import MrdistillNote
from mrdistill.models import build_model
from mrdistill.accel.native_conv import (NativeGradConv2d, eligible, kernel_preferred, narrow_conv,
                                          native_weight_grad)

needs_kernel = pytest.mark.skipif(native.convgrad_kernel() is None,
                                  reason="no AVX2 CPU or no C compiler here: autograd's conv is used")
CL = torch.channels_last


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _reference_grads(x: torch.Tensor, dy: torch.Tensor, cout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """gw, gb of conv3x3(x) for the output gradient dy, from PyTorch's own conv backward (NCHW)."""
    w = torch.zeros(cout, x.shape[1], 3, 3)
    _, gw, gb = torch.ops.aten.convolution_backward(
        dy.contiguous(), x.contiguous(), w, [cout], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
        [False, True, True])
    return gw, gb


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,c,cout,h,w", [
    (2, 32, 32, 7, 70),   # rows longer than one 64-pixel chunk
    (1, 8, 1, 1, 1),      # one pixel: every tap but the centre falls outside
    (3, 16, 3, 9, 10),    # an odd number of output channels
    (1, 40, 5, 2, 130),   # 32 + 8 channels: the one-vector remainder
    (2, 32, 1, 5, 64),    # the last conv of a cascade
])
def test_weight_grad_kernel_equals_autograd(n, c, cout, h, w, threads):
    x = _randn(n, c, h, w, seed=0).contiguous(memory_format=CL)
    dy = _randn(n, cout, h, w, seed=1).contiguous(memory_format=CL)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # rows split over `threads` workers
    try:
        gw, gb = native.conv3x3_weight_grad_native(x, dy)
    finally:
        torch.set_num_threads(before)
    ref_w, ref_b = _reference_grads(x, dy, cout)
    assert gw.shape == (cout, c, 3, 3) and gw.is_contiguous(memory_format=CL)
    torch.testing.assert_close(gw, ref_w, rtol=1e-5, atol=1e-5 * (n * h * w) ** 0.5)
    torch.testing.assert_close(gb, ref_b, rtol=1e-5, atol=1e-5 * (n * h * w) ** 0.5)


@pytest.mark.skipif(native.tapconv_kernel() is None, reason="no AVX2 CPU or no C compiler here")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,cout,bias", [(3, 1, True), (1, 2, False)])
def test_narrow_conv_equals_conv2d_whatever_the_batch_split(n, cout, bias, threads):
    """The tap-conv kernel's batch parts (one per thread) put together give conv2d's output."""
    x = _randn(n, 16, 9, 21, seed=0).contiguous(memory_format=CL)
    w, b = _randn(cout, 16, 3, 3, seed=1), _randn(cout, seed=2) if bias else None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = narrow_conv(x, w, b)
    finally:
        torch.set_num_threads(before)
    assert y.shape == (n, cout, 9, 21)
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1), rtol=1e-5, atol=1e-4)


@needs_kernel
def test_weight_grad_kernel_refuses_what_it_cannot_read():
    x, dy = _randn(1, 16, 5, 5, seed=0), _randn(1, 4, 5, 5, seed=1)
    assert native.conv3x3_weight_grad_native(x, dy.contiguous(memory_format=CL)) is None  # NCHW x
    assert native.conv3x3_weight_grad_native(_randn(1, 12, 5, 5, seed=0).contiguous(memory_format=CL),
                                             dy.contiguous(memory_format=CL)) is None  # 12 channels
    assert native.conv3x3_weight_grad_native(x.contiguous(memory_format=CL).double(),
                                             dy.contiguous(memory_format=CL).double()) is None
    assert native.conv3x3_weight_grad_native(
        x.contiguous(memory_format=CL), _randn(1, 4, 5, 6, seed=1).contiguous(memory_format=CL)) is None


@needs_kernel
@pytest.mark.parametrize("preferred", [True, False])
@pytest.mark.parametrize("cin,cout,bias", [(1, 8, True), (2, 16, True), (8, 8, False), (32, 1, True),
                                           (16, 3, True)])
def test_native_grad_conv_equals_conv2d_in_value_and_gradients(cin, cout, bias, preferred, monkeypatch):
    """Every input: the first conv of a cascade (few input channels: the kernel with x and dy
    swapped, the input gradient by the tap-conv kernel as a conv with the flipped weight), hidden
    convs (weight gradient by the kernel or by oneDNN, as `kernel_preferred` says) and last convs
    (forward by the tap-conv kernel)."""
    monkeypatch.setattr("mrdistill.accel.native_conv.kernel_preferred", lambda: preferred)
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    torch.nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(2))
    ref = [p.detach().clone().requires_grad_() for p in conv.parameters()]
    x = _randn(2, cin, 11, 70, seed=0).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    dy = _randn(2, cout, 11, 70, seed=1)
    assert eligible(conv)
    with native_weight_grad(conv) as swapped:
        assert swapped == 1 and type(conv) is NativeGradConv2d
        y = conv(x)
        y.backward(dy)
    assert type(conv) is nn.Conv2d  # class restored on exit
    y_ref = F.conv2d(x_ref, ref[0], ref[1] if bias else None, padding=1)
    y_ref.backward(dy)
    assert y.is_contiguous(memory_format=CL)
    # Another summation order of 9 * cin unit-sized terms (the tap-conv kernel for cout < 8).
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-4)
    for got, want in zip([x.grad, *(p.grad for p in conv.parameters())], [x_ref.grad, *(p.grad for p in ref)]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("kwargs", [dict(in_channels=1), dict(in_channels=2, activation="leaky_relu",
                                                              residual=True), dict(dc="soft", convs=3)])
def test_dccnn_training_gradients_match_plain_autograd(kwargs):
    """A DC-CNN's loss gradient inside `native_weight_grad` equals plain autograd's; every conv of
    it is switched (8-channel hidden layers), and no-grad forwards keep nn.Conv2d's result."""
    model = build_model("dccnn", cascades=2, channels=8, seed=0, **kwargs).to(memory_format=CL)
    plain = build_model("dccnn", cascades=2, channels=8, seed=0, **kwargs)
    kspace = torch.fft.fft2(_randn(2, 1, 12, 66, seed=3), norm="ortho").to(torch.complex64)
    mask = (_randn(2, 1, 1, 66, seed=4) > 0).float()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with native_weight_grad(model) as swapped:
        assert swapped == len(convs)
        with torch.no_grad():
            torch.testing.assert_close(model(kspace * mask, mask).image, plain(kspace * mask, mask).image)
        model(kspace * mask, mask).image.square().mean().backward()
    plain(kspace * mask, mask).image.square().mean().backward()
    assert all(type(m) is nn.Conv2d for m in convs)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        scale = q.grad.abs().max().item() + 1e-12
        assert (p.grad - q.grad).abs().max().item() <= 1e-5 * scale, name


def test_nothing_is_switched_when_disabled_or_without_the_kernel(monkeypatch):
    model = build_model("dccnn", cascades=1, channels=8, seed=0)
    with native_weight_grad(model, enabled=False) as swapped:
        assert swapped == 0 and all(type(m) is nn.Conv2d for m in model.modules() if isinstance(m, nn.Conv2d))
    monkeypatch.setenv("MRDISTILL_NATIVE", "0")
    native.convgrad_kernel.cache_clear()
    try:
        with pytest.warns(MrdistillNote, match="MRDISTILL_NATIVE=0"), native_weight_grad(model) as swapped:
            assert swapped == 0
    finally:
        native.convgrad_kernel.cache_clear()
    # Not eligible: another kernel size, stride or grouping, or channels the kernel cannot vector.
    for conv in (nn.Conv2d(8, 8, 5, padding=2), nn.Conv2d(8, 8, 3, padding=1, stride=2),
                 nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.Conv2d(3, 5, 3, padding=1),
                 nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")):
        assert not eligible(conv)


@needs_kernel
def test_the_class_comes_back_when_the_block_raises():
    model = build_model("dccnn", cascades=1, channels=8, seed=0)
    with pytest.raises(RuntimeError, match="stop"), native_weight_grad(model):
        raise RuntimeError("stop")
    assert all(type(m) is nn.Conv2d for m in model.modules() if isinstance(m, nn.Conv2d))


@needs_kernel
def test_double_backward_is_refused_not_wrong():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = _randn(1, 8, 6, 6, seed=0).requires_grad_()
    with native_weight_grad(conv):
        (gx,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match="once_differentiable|double backward|differentiable"):
            gx.sum().backward()


@pytest.mark.parametrize(("capability", "cap", "preferred"), [
    ("AVX2", None, True), ("AVX512", None, False), ("AVX512", "AVX2", True), ("AVX512", "avx2_vnni", True),
    ("AVX512", "AVX512_CORE", False), ("AVX512", "AVX10_1_512", False), ("DEFAULT", None, False)])
def test_kernel_is_preferred_only_where_onednn_runs_avx2_code(monkeypatch, capability, cap,
                                                               preferred) -> None:
    """oneDNN's AVX-512 weight gradient beats the AVX2 kernel (benchmarks/README.md): `fit` uses
    the kernel only where oneDNN runs AVX2 code, by CPU or by ONEDNN_MAX_CPU_ISA."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert kernel_preferred() is preferred


def test_a_failed_build_is_a_note_naming_the_log_of_the_compilers_message(monkeypatch, tmp_path):
    """optim.channels_last asks for the kernel: a build that fails says so (one note) and keeps
    the compiler's message in a log file, instead of dropping it."""
    compiler = tmp_path / "broken-cc"
    compiler.write_text("#!/bin/sh\necho 'convgrad.c:1: error: no such instruction' >&2\nexit 1\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    monkeypatch.setenv("MRDISTILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "simd_available", lambda: True)
    native.convgrad_kernel.cache_clear()
    model = build_model("dccnn", cascades=1, channels=8, seed=0)
    try:
        with pytest.warns(MrdistillNote, match=r"channels_last.*compiler output: .*convgrad-.*\.log") as seen, \
                native_weight_grad(model) as swapped:
            assert swapped == 0
    finally:
        native.convgrad_kernel.cache_clear()
    log = Path(str(seen[0].message).split("compiler output: ")[1].split(")")[0])
    assert log.is_file() and "no such instruction" in log.read_text() and str(compiler) in log.read_text()
    assert not list((tmp_path / "cache").rglob("*.so"))
