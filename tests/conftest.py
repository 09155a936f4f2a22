"""Shared fixtures: tiny synthetic batches and a tiny embedded-data config."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

from mrdistill.cli.main import main
from mrdistill.config import DataConfig
from mrdistill.data.sample import Sample
from mrdistill.physics.fft import fft2c, ifft2c, image_to_network
from mrdistill.physics.masks import make_mask


def pytest_configure(config) -> None:
    """Caches (compiled kernels, fastMRI indexes) go to a private folder, never the user's."""
    config._mrdistill_cache = tempfile.mkdtemp(prefix="mrdistill-test-cache-")
    os.environ["MRDISTILL_CACHE_DIR"] = config._mrdistill_cache


def pytest_unconfigure(config) -> None:
    shutil.rmtree(getattr(config, "_mrdistill_cache", ""), ignore_errors=True)


def synthetic_batch(n: int = 2, size: int = 32, complex_input: bool = False, seed: int = 0) -> Sample:
    """A batch of smooth random images with KD-MRI masks; real or complex."""
    g = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)
    image = img.to(torch.complex64)
    if complex_input:
        image = image * torch.polar(torch.ones_like(img), torch.rand(n, 1, 1, 1, generator=g))
    mask = torch.stack([make_mask("kdmri", (size, size), 4.0, seed=seed + i) for i in range(n)])
    k = fft2c(image) * mask + 0.0
    zf = image_to_network(ifft2c(k), complex_input)
    return Sample(k, mask, zf, img, torch.ones(n), [f"v{i}" for i in range(n)], list(range(n)))


def multicoil_batch(coils: int = 3, size: int = 32) -> Sample:
    """Two smooth images seen by `coils` random coils, 1-D mask with 6 central lines; complex."""
    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.avg_pool2d(torch.rand(2, 1, size, size, generator=g), 5, 1, 2)
    maps = torch.randn(1, coils, size, size, dtype=torch.complex64, generator=g) * 0.1 + 1
    mask = torch.zeros(2, 1, 1, size)
    mask[..., ::3] = 1
    mask[..., size // 2 - 3:size // 2 + 3] = 1
    k = fft2c(maps * image) * mask
    return Sample(k, mask, image_to_network(ifft2c(k), True), image, torch.ones(2), ["a", "b"], [0, 1])


@pytest.fixture
def batch() -> Sample:
    return synthetic_batch()


@pytest.fixture
def tiny_data() -> DataConfig:
    """A very small slice of the embedded corpus (fast enough for CLI smoke tests)."""
    return DataConfig(image_size=32, max_train_slices=8, max_eval_slices=4, slab=8)


def run_cli(args, capsys):
    """Run `mrdistill ARGS` in-process -> (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err
