"""Column DC (1-D masks as matmuls) equals FFT DC, and stays float32 under autocast."""

from __future__ import annotations

import torch

from mrdistill.physics.column_dc import column_dc, column_dc_operators, column_rows
from mrdistill.physics.consistency import dc_network_image
from mrdistill.physics.fft import fft2c, ifft2c
from conftest import synthetic_batch


def test_column_dc_matches_fft_dc_and_stays_float32_under_bf16_autocast() -> None:
    sample = synthetic_batch(n=2, size=16, seed=5)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    reference = dc_network_image(x, sample.kspace, sample.mask, complex_input=False)
    rows = column_rows(sample.mask, 2, 16)
    (op,) = column_dc_operators(rows, [1.0], complex_input=False)
    b = ifft2c(sample.kspace).real
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = column_dc(x.to(torch.bfloat16), op, b, complex_input=False)
    assert out.dtype == torch.float32
    # Only the bf16 rounding of the input differs from the float32 FFT DC.
    assert torch.allclose(out, dc_network_image(x.to(torch.bfloat16).float(), sample.kspace,
                                                sample.mask, complex_input=False), atol=1e-5)
    assert torch.allclose(column_dc(x, op, b, complex_input=False), reference, atol=1e-5)
