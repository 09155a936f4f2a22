"""The optional compiled kernels: same numbers as torch, clean refusal where they cannot run."""

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from mrdistill.accel import native
from mrdistill.models import build_model
from mrdistill.accel.fast_layers import NativeCascade, TapConv

needs_kernel = pytest.mark.skipif(native.tapconv_kernel() is None,
                                  reason="no AVX2 CPU or no C compiler here: the torch path is used")
needs_cascade_kernel = pytest.mark.skipif(
    native.cascade_kernel() is None, reason="no AVX-512 CPU or no C compiler here: the layer path is used")


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
    native.cascade_kernel.cache_clear()
    try:
        assert native.tapconv_kernel() is None and native.cascade_kernel() is None
        x = _conv_input(1, 32, 4, 4)
        assert native.tapconv_native(x, torch.randn(1, 3, 3, 32), torch.randn(1)) is None
        assert not NativeCascade.fits(build_model("dccnn", convs=3).cascades[0])
    finally:
        native.tapconv_kernel.cache_clear()
        native.cascade_kernel.cache_clear()
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


def _cascade(cin: int, width: int, layers: int, seed: int) -> list[torch.nn.Conv2d]:
    g = torch.Generator().manual_seed(seed)
    widths = [cin] + [width] * (layers - 1) + [cin]
    convs = [torch.nn.Conv2d(widths[i], widths[i + 1], 3, padding=1) for i in range(layers)]
    with torch.no_grad():  # seeded weights of the default init's scale, without the global RNG
        for conv in convs:
            fan_in = conv.in_channels * 9
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / fan_in**0.5)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) / fan_in**0.5)
    return convs


def _cascade_reference(x: torch.Tensor, convs: list, slope: float, residual: bool) -> torch.Tensor:
    y = x
    for j, conv in enumerate(convs):
        y = conv(y)
        if j < len(convs) - 1:
            y = F.leaky_relu(y, slope)
    return x + y if residual else y


def _pack(convs: list) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's weight layout, written out independently of NativeCascade."""
    *hidden, last = convs
    flat = [c.weight.detach().permute(2, 3, 1, 0).reshape(-1) for c in hidden]
    weights = torch.cat([*flat, last.weight.detach().permute(0, 2, 3, 1).reshape(-1)]).contiguous()
    return weights, torch.cat([c.bias.detach() for c in convs]).contiguous()


@needs_cascade_kernel
@pytest.mark.parametrize("n,cin,width,layers,h,w,slope,residual", [
    (2, 1, 32, 3, 19, 27, 0.0, True),    # the KD-MRI student; odd sizes: 8-pixel blocks + remainder
    (1, 1, 32, 5, 9, 16, 0.0, False),    # the teacher
    (2, 2, 32, 5, 7, 9, 0.01, True),     # complex input, LeakyReLU (the adaptive-KD student)
    (1, 1, 16, 2, 5, 33, 0.0, True),     # no hidden C -> C layer; 16-pixel blocks
    (1, 2, 64, 4, 11, 6, 0.2, False),    # 4-pixel blocks, a row narrower than two blocks
    (3, 1, 32, 3, 1, 1, 0.0, True),      # a single pixel: every tap is padding but the centre
    (1, 1, 32, 3, 2, 40, 0.0, False),    # fewer rows than the 3-row rings
])
def test_compiled_cascade_equals_its_convs(n, cin, width, layers, h, w, slope, residual):
    convs = _cascade(cin, width, layers, seed=h * w)
    x = torch.randn(n, cin, h, w, generator=torch.Generator().manual_seed(1))
    weights, biases = _pack(convs)
    with torch.no_grad():
        ref = _cascade_reference(x, convs, slope, residual)
        out = native.cascade_native(x, weights, biases, channels=width, out_channels=cin,
                                    layers=layers, slope=slope, residual=residual)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@needs_cascade_kernel
def test_compiled_cascade_refuses_what_it_cannot_take():
    convs = _cascade(1, 32, 3, seed=0)
    weights, biases = _pack(convs)
    x = torch.randn(1, 1, 8, 8)
    kwargs = {"channels": 32, "out_channels": 1, "layers": 3, "slope": 0.0, "residual": False}
    assert native.cascade_native(x.double(), weights, biases, **kwargs) is None
    assert native.cascade_native(torch.randn(1, 1, 8, 16)[..., ::2], weights, biases, **kwargs) is None
    assert native.cascade_native(x, weights, biases, **{**kwargs, "channels": 24}) is None
    assert native.cascade_native(x, weights, biases, **{**kwargs, "residual": True,
                                                        "out_channels": 2}) is None
    with pytest.raises(ValueError, match="do not match"):  # the kernel would read past the weights
        native.cascade_native(x, weights[:-1], biases, **kwargs)
    with pytest.raises(ValueError, match="do not match"):
        native.cascade_native(x, weights, biases, **{**kwargs, "layers": 4})
    assert native.cascade_native(x, weights, biases, rows=(3, 3), **kwargs) is None
    assert native.cascade_native(x, weights, biases, rows=(0, 9), **kwargs) is None
    with pytest.raises(ValueError, match="out must be"):
        native.cascade_native(x, weights, biases, out=torch.empty(1, 1, 8, 9), **kwargs)


@needs_cascade_kernel
@pytest.mark.parametrize("rows", [(0, 1), (2, 9), (9, 13), (0, 13)])
def test_compiled_cascade_writes_exactly_the_requested_rows(rows):
    # A band must see the same halo rows as the whole image, so that threads can split a slice.
    convs = _cascade(1, 32, 5, seed=2)
    weights, biases = _pack(convs)
    x = torch.randn(2, 1, 13, 10, generator=torch.Generator().manual_seed(3))
    kwargs = {"channels": 32, "out_channels": 1, "layers": 5, "slope": 0.0, "residual": True}
    whole = native.cascade_native(x, weights, biases, **kwargs)
    out = torch.full_like(whole, float("nan"))
    native.cascade_native(x, weights, biases, rows=rows, out=out, **kwargs)
    band = slice(*rows)
    assert torch.equal(out[:, :, band], whole[:, :, band])
    outside = torch.ones(13, dtype=torch.bool)
    outside[band] = False
    assert out[:, :, outside].isnan().all()  # rows outside the band are left alone


@needs_cascade_kernel
def test_native_cascade_module_fits_only_what_the_kernel_covers():
    assert NativeCascade.fits(build_model("dccnn", convs=5).cascades[0])
    assert NativeCascade.fits(build_model("dccnn", convs=2, channels=64, in_channels=2).cascades[0])
    assert not NativeCascade.fits(build_model("dccnn", convs=3, channels=24).cascades[0])
    cascade = build_model("dccnn", convs=3, activation="leaky_relu", seed=3).cascades[0]
    x = torch.randn(2, 1, 12, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = _cascade_reference(x, list(cascade.convs), 0.01, residual=True)
        torch.testing.assert_close(NativeCascade(cascade, residual=True)(x), ref, rtol=1e-5, atol=1e-5)


@needs_cascade_kernel
def test_native_cascade_splits_one_slice_into_row_bands_across_threads(monkeypatch):
    import mrdistill.accel.fast_layers as fast_layers

    bands = []

    def recording(*args, rows, **kwargs):
        bands.append(rows)
        return native.cascade_native(*args, rows=rows, **kwargs)

    monkeypatch.setattr(fast_layers, "cascade_native", recording)
    layer = NativeCascade(build_model("dccnn", convs=5, seed=4).cascades[0], residual=False)
    x = torch.randn(1, 1, 160, 24, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = layer(x)
        torch.set_num_threads(2)  # 160 rows: two bands of 80, each on its own thread
        two = layer(x)
    finally:
        torch.set_num_threads(before)
    assert bands == [(0, 160), (0, 80), (80, 160)] or bands == [(0, 160), (80, 160), (0, 80)]
    assert torch.equal(two, one)
