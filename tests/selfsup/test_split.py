"""SSDU splits and re-undersampling masks: partitions of Omega, seeded, with clear errors."""

import numpy as np
import pytest
import torch

from mrdistill.errors import MrdistillError
from mrdistill.physics.masks import make_mask
from mrdistill.selfsup.split import (centre_band, reundersample, reundersample_batch, ssdu_split,
                                     ssdu_split_batch)

SHAPE = (32, 40)


def omega(kind: str = "kdmri", seed: int = 3) -> torch.Tensor:
    return make_mask(kind, SHAPE, 4.0, seed=seed)


@pytest.mark.parametrize("kind", ["kdmri", "gaussian2d"])
@pytest.mark.parametrize("selection", ["gaussian", "uniform"])
def test_ssdu_split_partitions_omega(kind, selection):
    mask = omega(kind)
    full = mask.expand(1, *SHAPE)
    theta, lam = ssdu_split(mask, SHAPE, 0.4, seed=7, selection=selection, acs_block=(4, 4))
    assert theta.shape == lam.shape == (1, *SHAPE)
    assert torch.equal(theta + lam, full)  # disjoint, and together exactly Omega
    assert int(lam.sum()) == round(0.4 * float(full.sum()))
    acs = torch.from_numpy(np.outer(centre_band(32, 4), centre_band(40, 4)))
    assert not lam[0][acs].any() and theta[0][acs & (full[0] > 0)].all()


def test_ssdu_split_is_seeded_and_leaves_global_rng_alone():
    mask = omega()
    torch.manual_seed(0)
    np.random.seed(0)
    state_t, state_n = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = ssdu_split(mask, SHAPE, 0.4, seed=1)
    assert torch.equal(a[1], ssdu_split(mask, SHAPE, 0.4, seed=1)[1])
    assert not torch.equal(a[1], ssdu_split(mask, SHAPE, 0.4, seed=2)[1])
    assert torch.equal(torch.get_rng_state(), state_t) and (np.random.get_state()[1] == state_n).all()


def test_gaussian_selection_prefers_the_centre():
    mask = torch.ones(1, *SHAPE)
    dist = []
    for sel in ("gaussian", "uniform"):
        lam = ssdu_split(mask, SHAPE, 0.2, seed=0, selection=sel, acs_block=(0, 0))[1][0]
        yy, xx = torch.nonzero(lam, as_tuple=True)
        dist.append(float(((yy - 16.0) ** 2 + (xx - 20.0) ** 2).sqrt().mean()))
    assert dist[0] < 0.8 * dist[1]


def test_reundersample_is_a_cartesian_subset_with_acs():
    mask = make_mask("kdmri", (64, 64), 4.0, seed=5)  # 16 columns, 8 central
    for factor, expect in ((2.0, 8), (2.5, 6)):
        sub = reundersample(mask, factor, seed=1, acs_lines=4)
        assert sub.shape == mask.shape
        assert bool((sub <= mask).all()) and int(sub.sum()) == expect
        assert sub[0, 0, 30:34].all()  # the 4 central columns (DC at 32)
    batch = reundersample_batch(torch.stack([mask, mask]), 2.0, seeds=[1, 2], acs_lines=4)
    assert batch.shape == (2, 1, 1, 64) and not torch.equal(batch[0], batch[1])
    theta, lam = ssdu_split_batch(torch.stack([mask, mask]), (64, 64), 0.4, seeds=[1, 2])
    assert theta.shape == lam.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("call, message", [
    (lambda m: ssdu_split(m, SHAPE, 1.0, seed=0), "rho"),
    (lambda m: ssdu_split(m, SHAPE, 0.0, seed=0), "rho"),
    (lambda m: ssdu_split(m, SHAPE, 0.4, seed=0, acs_block=(40, 4)), "larger than the image"),
    (lambda m: reundersample(m, 1.0, seed=0), "factor must be a number > 1"),
    (lambda m: reundersample(m, 2.0, seed=0, acs_lines=41), "larger than the image width"),
    (lambda m: reundersample(m, 4.0, seed=0, acs_lines=10), "exceed"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(MrdistillError, match=message):
        call(omega())
