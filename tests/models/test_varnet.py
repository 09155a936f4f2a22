"""mrdistill's contract for `varnet` and `unet` (fastMRI parity itself: test_fastmri_parity.py)."""

from __future__ import annotations

import pytest
import torch

from conftest import multicoil_batch
from mrdistill.models import build_model
from mrdistill.models.base import run_model
from mrdistill.models.varnet import acs_bounds


def test_varnet_trains_through_run_model_with_features() -> None:
    batch = multicoil_batch()
    model = build_model("varnet", num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2, seed=0)
    out = run_model(model, batch, return_features=True)
    assert out.image.shape == (2, 1, 32, 32) and out.image.dtype == torch.float32
    assert sorted(out.features) == sorted(["sens_maps", "sens.bottleneck"] + [
        f"cascade{i}.{k}" for i in (1, 2) for k in ("kspace", "image", "bottleneck")])
    assert out.features["sens_maps"].shape == (2, 6, 32, 32)
    (out.image - batch.target).abs().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.cascades[1].dc_weight.grad.abs() > 0  # cascade 1 starts at k = k0: no DC term yet


def test_coil_maps_are_normalised_and_acs_is_counted_from_the_centre() -> None:
    batch = multicoil_batch()
    model = build_model("varnet", num_cascades=1, chans=2, pools=1, sens_chans=2, sens_pools=1, seed=0)
    maps = model(batch.kspace, batch.mask, return_features=True).features["sens_maps"]
    re, im = maps.chunk(2, dim=1)
    torch.testing.assert_close((re ** 2 + im ** 2).sum(1), torch.ones(2, 32, 32), atol=1e-4, rtol=0)
    start, count = acs_bounds(batch.mask, None)
    assert count.tolist() == [6, 6] and start.tolist() == [13, 13]
    assert acs_bounds(torch.ones(1, 1, 1, 32), None)[1].tolist() == [1]  # fastMRI's count, kept
    assert acs_bounds(batch.mask, 4)[1].tolist() == [4, 4]


@pytest.mark.parametrize("in_chans", [1, 6])
def test_unet_takes_the_magnitude_or_the_coil_images(in_chans: int) -> None:
    batch = multicoil_batch()
    model = build_model("unet", in_chans=in_chans, out_chans=1, chans=4, num_pool_layers=2, seed=0)
    out = run_model(model, batch, return_features=True)
    assert out.image.shape == (2, 1, 32, 32) and {"bottleneck", "down1", "up2"} <= set(out.features)
    with pytest.raises(ValueError, match="in_chans"):
        build_model("unet", in_chans=4, chans=4, num_pool_layers=2)(batch.kspace, batch.mask)
