"""Fresh self-supervised masks under torchrun: each rank its own part of one process's draws."""

import numpy as np
import pytest
import torch

from conftest import synthetic_batch
from mrdistill.config import SelfSupConfig
from mrdistill.models import build_model
from mrdistill.selfsup.teachers import SelfSupervisedObjective, fresh_seeds


def test_rank_parts_of_the_fresh_seeds_are_one_process_draw():
    one = fresh_seeds(np.random.default_rng(7), 4)
    parts = [fresh_seeds(np.random.default_rng(7), 2, rank, 2) for rank in range(2)]
    assert parts[0] + parts[1] == one and parts[0] != parts[1]


@pytest.mark.parametrize("method", ["reundersample", "ssdu"])
def test_two_ranks_mask_as_one_process_with_the_whole_batch(method):
    """Rank r of 2 with items 2r..2r+1 reconstructs them from the masks one process with all four
    items uses (same outputs, same generator state after); given the same items, the two ranks
    use different masks (they do not repeat one split pattern)."""
    cfg = SelfSupConfig(method=method, teachers=1, acs_lines=2)
    model = build_model("dccnn", seed=0, cascades=1, convs=3, channels=4, in_channels=2)
    whole = synthetic_batch(n=4, size=32, complex_input=True)._replace(target=None)
    half = lambda r: whole._replace(**{f: getattr(whole, f)[2 * r:2 * r + 2]  # noqa: E731
                                       for f in ("kspace", "mask", "zero_filled", "max_value",
                                                 "volume", "slice_index")})
    one = SelfSupervisedObjective(cfg, seed=5)
    _, expected = one.teacher_loss(model, whole, 0)
    ranks = [SelfSupervisedObjective(cfg, seed=5, rank=r, world_size=2) for r in range(2)]
    outs = [ranks[r].teacher_loss(model, half(r), 0)[1] for r in range(2)]
    torch.testing.assert_close(torch.cat(outs), expected)
    assert all(r.rng.bit_generator.state == one.rng.bit_generator.state for r in ranks)
    same_items = [SelfSupervisedObjective(cfg, seed=5, rank=r, world_size=2).teacher_loss(
        model, half(0), 0)[1] for r in range(2)]
    assert not torch.allclose(same_items[0], same_items[1])


@pytest.mark.parametrize("method", ["reundersample", "ssdu"])
def test_eval_mode_uses_fixed_masks_and_leaves_the_training_generator(method):
    """`validation_objective` puts the objective in eval mode: even with fresh masks it then scores
    with the fixed per-slice masks (the same value every epoch and on every rank) and does not
    advance the generator that training draws from."""
    cfg = SelfSupConfig(method=method, teachers=1, acs_lines=2)
    model = build_model("dccnn", seed=0, cascades=1, convs=3, channels=4, in_channels=2)
    batch = synthetic_batch(n=2, size=32, complex_input=True)._replace(target=None)
    objective = SelfSupervisedObjective(cfg, seed=5, rank=1, world_size=2).eval()
    before = objective.rng.bit_generator.state
    with torch.no_grad():
        first, again = (objective(model, batch)["loss"] for _ in range(2))
        fixed = SelfSupervisedObjective(SelfSupConfig(method=method, teachers=1, acs_lines=2,
                                                      fresh_masks=False), seed=5).eval()
        assert objective.rng.bit_generator.state == before
        assert first == again == fixed(model, batch)["loss"]
        objective.train()
        assert objective(model, batch)["loss"] != first  # training draws fresh masks again
    assert objective.rng.bit_generator.state != before
