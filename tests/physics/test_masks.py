"""Sampling masks: fastMRI equivalence, sampled fractions, layout, determinism, RNG hygiene, errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mrdistill.errors import MrdistillError
from mrdistill.physics.masks import (MASK_KINDS, fastmri_seed, kdmri_line_density, make_mask,
                                     stable_seed)

# Golden sampled-column indices produced by fastMRI 0.3.0's own implementation
# (`pip download --no-deps fastmri`, fastmri/data/subsample.py imported alone in a throwaway script):
# RandomMaskFunc([cf], [acc]) / EquispacedMaskFractionFunc([cf], [acc]) called with
# shape (1, 64, W, 2) and seed=seed; cf is fastMRI's usual 0.08 at 4x, 0.04 at 8x, 0.32/3 at 3x.
# The same script also matched our masks bit for bit on 800 random (W, acc, cf, seed) draws.
FASTMRI_GOLDEN = {
    ("random", 100, 42, 4): [4, 5, 6, 10, 14, 15, 21, 29, 31, 32, 37, 40, 42, 46, 47, 48, 49, 50, 51,
                             52, 53, 56, 58, 66, 68, 72, 77, 79, 83, 90, 98, 99],
    ("random", 320, 1234, 8): [17, 22, 40, 42, 46, 53, 65, 78, 98, 106, 128, 129, 140, 144, 154, 155,
                               156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 185, 206, 210,
                               221, 230, 240, 241, 246, 248, 253, 273, 278, 280, 312],
    ("random", 37, 7, 3): [0, 7, 13, 16, 17, 18, 19, 20, 22, 25, 30],
    ("equispaced_fraction", 100, 42, 4): [3, 8, 14, 19, 25, 30, 35, 41, 46, 47, 48, 49, 50, 51, 52,
                                          53, 57, 63, 68, 73, 79, 84, 90, 95],
    ("equispaced_fraction", 320, 1234, 8): [3, 14, 26, 37, 48, 60, 71, 83, 94, 105, 117, 128, 139,
                                            151, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163,
                                            164, 165, 166, 174, 185, 196, 208, 219, 230, 242, 253,
                                            265, 276, 287, 299, 310],
    ("equispaced_fraction", 37, 7, 3): [3, 7, 11, 15, 17, 18, 19, 20, 23, 27, 31, 35],
}

SAMPLERS = ("kdmri", "kdmri_wide", "random", "equispaced_fraction", "gaussian2d")


@pytest.mark.parametrize("key", sorted(FASTMRI_GOLDEN))
def test_matches_fastmri_exactly(key: tuple[str, int, int, int]) -> None:
    kind, width, seed, acc = key
    mask = make_mask(kind, (64, width), acc, seed=seed)
    assert mask.shape == (1, 1, width) and mask.dtype == torch.float32
    assert torch.nonzero(mask.flatten()).flatten().tolist() == FASTMRI_GOLDEN[key]


def test_default_center_fraction_matches_explicit() -> None:
    for acc, cf in [(4, 0.08), (8, 0.04), (5, 0.064)]:
        a = make_mask("random", (8, 256), acc, seed=3)
        b = make_mask("random", (8, 256), acc, seed=3, center_fraction=cf)
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["kdmri", "kdmri_wide"])
@pytest.mark.parametrize("width,acc", [(240, 4), (150, 5), (368, 8)])
def test_kdmri_has_exact_line_count_and_central_band(kind: str, width: int, acc: int) -> None:
    mask = make_mask(kind, (8, width), acc, seed=11).flatten()
    assert int(mask.sum()) == round(width / acc)
    start = (width - 10 + 1) // 2
    assert bool(mask[start:start + 10].all()) and bool(mask[width // 2])


def _schlemper_density(width: int, acc: float, n_low: int) -> np.ndarray:
    """KD-MRI's density written out from its definition (Schlemper's cartesian_mask): Gaussian in
    the offset from DC with sigma W/10 plus 1/(2 acc), centre band zeroed, renormalised."""
    k = np.arange(width) - width / 2
    pdf = np.exp(-0.5 * (k / (width / 10)) ** 2) + 1 / (2 * acc)
    start = (width - n_low + 1) // 2
    pdf[start:start + n_low] = 0
    return pdf / pdf.sum()


@pytest.mark.parametrize("width,acc,n_low", [(240, 4, 10), (256, 8, 10), (64, 5, 6), (150, 4, 0)])
def test_kdmri_density_is_schlemper_cartesian_mask(width: int, acc: float, n_low: int) -> None:
    np.testing.assert_allclose(kdmri_line_density(width, acc, n_low),
                               _schlemper_density(width, acc, n_low), rtol=1e-12, atol=0)


def test_kdmri_density_mass_near_dc() -> None:
    # The figure that distinguishes the two: probability within |k| <= W/8 (no centre band).
    width = 256
    near = np.abs(np.arange(width) - width // 2) <= width / 8
    assert kdmri_line_density(width, 4, 0)[near].sum() == pytest.approx(0.615, abs=0.002)
    assert kdmri_line_density(width, 8, 0)[near].sum() == pytest.approx(0.688, abs=0.002)
    assert kdmri_line_density(width, 4, 0, wide=True)[near].sum() == pytest.approx(0.460, abs=0.002)


def test_kdmri_sampler_draws_like_weighted_choice_without_replacement() -> None:
    # Schlemper draws with numpy's choice(W, n, replace=False, p=density); our one-sort draw must
    # give the same distribution: compare how often each column is picked over many seeds.
    width, acc, n_low, runs = 64, 4, 6, 600
    density = _schlemper_density(width, acc, n_low)
    rng = np.random.RandomState(0)
    ref = np.zeros(width)
    for _ in range(runs):
        ref[rng.choice(width, 16 - n_low, replace=False, p=density)] += 1
    ours = sum(make_mask("kdmri", (4, width), acc, seed=s, center_lines=n_low).flatten().numpy()
               for s in range(runs))
    band = np.zeros(width, dtype=bool)
    band[(width - n_low + 1) // 2:][:n_low] = True
    ours, ref = ours[~band] / runs, ref[~band] / runs
    assert np.abs(ours - ref).max() < 0.09  # binomial sd <= 0.02 per column at 600 runs
    # The blocks near DC and at the edges agree much more tightly than single columns.
    near = np.abs(np.arange(width) - width // 2)[~band] <= width / 8
    assert ours[near].sum() == pytest.approx(ref[near].sum(), abs=0.25)


def test_kdmri_density_peaks_at_the_centre() -> None:
    width = 240
    counts = sum(make_mask("kdmri", (8, width), 4, seed=s).flatten() for s in range(20))
    centre = counts[width // 2 - 40: width // 2 + 40].mean()
    edges = torch.cat([counts[:40], counts[-40:]]).mean()
    assert centre > 2 * edges > 0


def test_random_fraction_matches_on_average() -> None:
    # Random lines are i.i.d., so test the expectation over seeds rather than single draws.
    width, acc = 368, 4
    mean = np.mean([make_mask("random", (8, width), acc, seed=s).sum().item() for s in range(40)])
    assert abs(mean - width / acc) < 2.5


@pytest.mark.parametrize("width,acc", [(368, 4), (320, 8), (240, 5), (151, 3)])
def test_equispaced_fraction_within_two_lines(width: int, acc: int) -> None:
    for seed in range(3):
        count = make_mask("equispaced_fraction", (8, width), acc, seed=seed).sum().item()
        assert abs(count - width / acc) <= 2


def test_gaussian2d_fraction_shape_and_centre_block() -> None:
    h, w, acc = 40, 36, 5
    mask = make_mask("gaussian2d", (h, w), acc, seed=2)
    assert mask.shape == (1, h, w) and mask.dtype == torch.float32
    assert int(mask.sum()) == round(h * w / acc)
    assert bool(mask[0, h // 2 - 4: h // 2 + 4, w // 2 - 4: w // 2 + 4].all())
    ring = mask[0, h // 2 - 10: h // 2 + 10, w // 2 - 10: w // 2 + 10].mean()
    assert ring > 2 * mask.mean()  # variable density: the centre is denser


@pytest.mark.parametrize("kind", SAMPLERS)
def test_uncentred_layout_is_ifftshift(kind: str) -> None:
    centred = make_mask(kind, (12, 40), 4, seed=5, center_lines=4 if kind != "random" else None)
    shifted = make_mask(kind, (12, 40), 4, seed=5, centred=False,
                        center_lines=4 if kind != "random" else None)
    dims = (-1,) if centred.shape[-2] == 1 else (-2, -1)
    assert torch.equal(shifted, torch.fft.ifftshift(centred, dim=dims))
    assert bool(shifted[..., 0, 0])  # DC sampled at index 0 in the un-centred layout


@pytest.mark.parametrize("kind", SAMPLERS)
def test_deterministic_per_seed(kind: str) -> None:
    a = make_mask(kind, (32, 64), 4, seed=7)
    assert torch.equal(a, make_mask(kind, (32, 64), 4, seed=7))
    assert not torch.equal(a, make_mask(kind, (32, 64), 4, seed=8))
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_global_rng_state_is_untouched() -> None:
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    for kind in SAMPLERS:
        make_mask(kind, (16, 32), 4, seed=1)
    assert torch.equal(torch_state, torch.get_rng_state())
    after = np.random.get_state()
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1]) and np_state[2:] == after[2:]
    assert py_state == random.getstate()


def test_stable_seed_is_stable_and_32_bit() -> None:
    # sha256-based: these literals hold in every process (Python's hash() would not).
    assert stable_seed("file1000001.h5") == 843614225
    assert stable_seed("") == 3820012610
    assert stable_seed("a") != stable_seed("b")
    assert all(0 <= stable_seed(f"vol{i}") < 2**32 for i in range(20))


def test_fastmri_seed_is_the_file_names_code_points() -> None:
    assert fastmri_seed("file1000.h5") == (102, 105, 108, 101, 49, 48, 48, 48, 46, 104, 53)
    # an array seed reaches numpy as fastMRI passes it: RandomState(tuple) in the random sampler
    a = make_mask("random", (8, 100), 4, seed=fastmri_seed("file1000.h5"))
    b = make_mask("random", (8, 100), 4, seed=fastmri_seed("file1001.h5"))
    assert not torch.equal(a, b)
    with pytest.raises(MrdistillError, match="non-empty"):
        fastmri_seed("")


def test_fixed_masks_load_1d_and_2d(tmp_path: Path) -> None:
    line = np.zeros(16, dtype=bool)
    line[[1, 8, 9]] = True
    np.save(tmp_path / "line.npy", line)
    m1 = make_mask("fixed", (6, 16), 4, seed=0, path=str(tmp_path / "line.npy"))
    assert m1.shape == (1, 1, 16) and m1.dtype == torch.float32
    assert torch.nonzero(m1.flatten()).flatten().tolist() == [1, 8, 9]
    plane = np.eye(6, 16, dtype=np.float64)
    np.save(tmp_path / "plane.npy", plane)
    m2 = make_mask("fixed", (6, 16), 4, seed=0, path=str(tmp_path / "plane.npy"))
    assert m2.shape == (1, 6, 16) and torch.equal(m2[0], torch.from_numpy(plane).float())


def test_fixed_mask_errors(tmp_path: Path) -> None:
    with pytest.raises(MrdistillError, match="path"):
        make_mask("fixed", (6, 16), 4, seed=0)
    with pytest.raises(MrdistillError, match="cannot read"):
        make_mask("fixed", (6, 16), 4, seed=0, path=str(tmp_path / "missing.npy"))
    (tmp_path / "junk.npy").write_text("not a numpy file")
    with pytest.raises(MrdistillError, match="cannot read"):
        make_mask("fixed", (6, 16), 4, seed=0, path=str(tmp_path / "junk.npy"))
    np.save(tmp_path / "wrong.npy", np.ones(15))
    with pytest.raises(MrdistillError, match="shape"):
        make_mask("fixed", (6, 16), 4, seed=0, path=str(tmp_path / "wrong.npy"))
    np.save(tmp_path / "soft.npy", np.full(16, 0.5))
    with pytest.raises(MrdistillError, match="0/1"):
        make_mask("fixed", (6, 16), 4, seed=0, path=str(tmp_path / "soft.npy"))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="spiral"), "valid: equispaced_fraction, fixed, gaussian2d, kdmri, kdmri_wide, random"),
        (dict(acceleration=1.0), "acceleration"),
        (dict(acceleration=0.5), "acceleration"),
        (dict(center_fraction=0.0), "center_fraction"),
        (dict(center_fraction=1.2), "center_fraction"),
        (dict(center_fraction=0.1, center_lines=4), "not both"),
        (dict(center_lines=40), "exceed"),
        (dict(seed=-1), "seed"),
        (dict(seed=()), "seed"),
        (dict(seed=(102, -1)), "seed"),
        (dict(shape=(0, 32)), "shape"),
        (dict(kind="gaussian2d", center_lines=40), "center_lines"),
        (dict(kind="equispaced_fraction", center_lines=16), "fewer"),
    ],
)
def test_bad_input_raises_mrdistill_error(kwargs: dict, match: str) -> None:
    args = dict(kind="kdmri", shape=(32, 64), acceleration=4.0, seed=0) | kwargs
    kind, shape, acc = args.pop("kind"), args.pop("shape"), args.pop("acceleration")
    with pytest.raises(MrdistillError, match=match):
        make_mask(kind, shape, acc, **args)


def test_mask_kinds_constant() -> None:
    assert MASK_KINDS == ("kdmri", "kdmri_wide", "random", "equispaced_fraction", "gaussian2d", "fixed")
