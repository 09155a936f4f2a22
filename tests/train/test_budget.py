"""Equal optimizer steps for plain and distilled students (`train.budget`)."""

import math

import pytest

from mrdistill.train.budget import matched_budget, matched_stages


@pytest.mark.parametrize("shares, steps, per_epoch, epochs, last", [
    ([1], 600, 40, [15], 600),
    ([1, 4], 600, 40, [3, 12], 480),
    ([1, 4], 610, 40, [3, 13], 490),  # the last stage stops mid-epoch
    ([1, 1, 2], 100, 10, [2, 2, 6], 60),
])
def test_matched_stages_split_the_budget(shares, steps, per_epoch, epochs, last):
    out = matched_stages([{"epochs": w, "task_weight": 1.0} for w in shares], steps, per_epoch)
    assert [st["epochs"] for st in out] == epochs and out[-1]["max_steps"] == last
    assert all("max_steps" not in st for st in out[:-1])


def test_matched_stages_rejects_a_budget_the_early_stages_use_up():
    with pytest.raises(ValueError, match="already use"):
        matched_stages([{"epochs": 9}, {"epochs": 1}], 10, 5)


def test_matched_budget_keeps_the_steps_and_the_decay_share():
    stages, optim = matched_budget([{"epochs": 1, "task_weight": 1.0}],
                                   {"epochs": 30, "batch_size": 2, "step_size": 20}, 10, 78)
    steps = 30 * math.ceil(10 / 2)
    per_epoch = math.ceil(78 / 2)
    assert stages[-1]["max_steps"] == steps and stages[-1]["epochs"] * per_epoch >= steps
    assert optim["epochs"] == stages[0]["epochs"] and optim["step_size"] == round(2 / 3 * optim["epochs"])
