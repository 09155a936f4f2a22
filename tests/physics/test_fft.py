"""Centred orthonormal FFTs and the complex <-> channel helpers."""

from __future__ import annotations

import torch

from mrdistill.physics.fft import (
    channels_to_complex,
    complex_to_channels,
    fft2c,
    ifft2c,
    image_to_network,
    network_to_image,
)


def _randc(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def test_round_trip_even_and_odd_sizes() -> None:
    for shape in [(2, 3, 8, 6), (1, 1, 7, 5)]:
        x = _randc(*shape)
        assert torch.allclose(ifft2c(fft2c(x)), x, atol=1e-5)
        assert torch.allclose(fft2c(ifft2c(x)), x, atol=1e-5)


def test_parseval_energy_is_preserved() -> None:
    x = _randc(2, 2, 16, 12, seed=1)
    k = fft2c(x)
    assert torch.allclose(k.abs().square().sum(), x.abs().square().sum(), rtol=1e-5)


def test_dc_sits_at_the_centre() -> None:
    # A constant image has all its energy at DC, which the centred FFT puts at (H//2, W//2).
    for h, w in [(8, 6), (7, 5)]:
        k = fft2c(torch.ones(1, 1, h, w, dtype=torch.complex64))
        peak = int(k.abs().flatten().argmax())
        assert divmod(peak, w) == (h // 2, w // 2)
        assert torch.isclose(k[0, 0, h // 2, w // 2].real, torch.tensor((h * w) ** 0.5))


def test_outputs_are_complex64() -> None:
    assert fft2c(torch.randn(1, 1, 4, 4)).dtype == torch.complex64
    assert ifft2c(_randc(1, 1, 4, 4).to(torch.complex128)).dtype == torch.complex64


def test_channel_helpers_round_trip() -> None:
    x = _randc(2, 3, 4, 5, seed=2)
    ch = complex_to_channels(x)
    assert ch.shape == (2, 6, 4, 5) and ch.dtype == torch.float32
    assert torch.equal(ch[:, :3], x.real) and torch.equal(ch[:, 3:], x.imag)
    assert torch.equal(channels_to_complex(ch), x)
    assert torch.equal(network_to_image(image_to_network(x, True), True), x)
    real = image_to_network(x, False)
    assert real.shape == (2, 3, 4, 5) and torch.equal(network_to_image(real, False), x.real.to(x.dtype))
