"""The optional compiled kernels: same numbers as torch, clean refusal where they cannot run."""

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from mrdistill.models import native
from mrdistill.models.fast_inference import TapConv

needs_kernel = pytest.mark.skipif(native.tapconv_kernel() is None,
                                  reason="no AVX2 CPU or no C compiler here: the torch path is used")


def _conv_input(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)


@needs_kernel
@pytest.mark.parametrize("n,c,cout,h,w", [(2, 32, 1, 19, 27), (1, 8, 2, 1, 1), (3, 16, 2, 9, 10),
                                          (1, 32, 1, 2, 40), (1, 24, 3, 17, 8)])
def test_compiled_tapconv_equals_conv2d(n, c, cout, h, w):
    # Odd sizes cover the image borders, rows shorter than one 8-pixel block and block remainders.
    x = _conv_input(n, c, h, w)
    g = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(cout, c, 3, 3, generator=g), torch.randn(cout, generator=g)
    out = native.tapconv_native(x, weight.permute(0, 2, 3, 1).contiguous(), bias)
    ref = F.conv2d(x, weight, bias, padding=1)
    assert out.shape == (n, cout, h, w) and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * c)


@needs_kernel
def test_compiled_tapconv_refuses_what_it_cannot_read():
    weight, bias = torch.randn(1, 3, 3, 32), torch.randn(1)
    assert native.tapconv_native(torch.randn(1, 32, 8, 8), weight, bias) is None  # NCHW, not NHWC
    assert native.tapconv_native(_conv_input(1, 12, 8, 8), torch.randn(1, 3, 3, 12), bias) is None
    assert native.tapconv_native(_conv_input(1, 32, 8, 8).double(), weight, bias) is None


@pytest.mark.parametrize("cout", [1, 2])
def test_tapconv_module_matches_conv_with_and_without_the_kernel(cout):
    conv = torch.nn.Conv2d(32, cout, 3, padding=1)
    x = _conv_input(2, 32, 13, 21)
    layer = TapConv(conv)
    with torch.no_grad():
        ref = conv(x)
        torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-4)
        layer.use_native = False  # the tap-matmul path every machine has
        torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-4)


def test_kernels_off_by_environment_or_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("MRDISTILL_NATIVE", "0")
    native.tapconv_kernel.cache_clear()
    try:
        assert native.tapconv_kernel() is None
        x = _conv_input(1, 32, 4, 4)
        assert native.tapconv_native(x, torch.randn(1, 3, 3, 32), torch.randn(1)) is None
    finally:
        native.tapconv_kernel.cache_clear()
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert native.build_kernel("tapconv", tmp_path) is None
    assert not list(tmp_path.rglob("*.so*")) and not list(tmp_path.rglob("*.tmp"))


@needs_kernel
def test_a_built_kernel_is_cached_and_reused(tmp_path):
    assert native.build_kernel("tapconv", tmp_path) is not None
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    assert native.build_kernel("tapconv", tmp_path) is not None
    assert list((tmp_path / "kernels").iterdir()) == built and built[0].stat().st_mtime_ns == stamp
