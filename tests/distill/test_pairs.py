"""Default feature pairs follow the models' actual depth (KD-MRI's pairs for D3C5 -> D5C5)."""

import pytest
import torch

from conftest import synthetic_batch
from mrdistill.distill import build_kd
from mrdistill.distill.pairs import default_pairs, depth_pairs
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model


def _features(**kwargs):
    b = synthetic_batch()
    return build_model("dccnn", **kwargs)(b.kspace, b.mask, return_features=True).features


def test_kdmri_models_get_kdmri_pairs():
    pairs = depth_pairs(_features(convs=3), _features(convs=5), "attention")
    assert pairs == default_pairs()


def test_pairs_follow_the_number_of_cascades():
    assert depth_pairs(_features(convs=3, cascades=2), _features(convs=5, cascades=2), "hint") == \
        {"cascade1.conv2": "cascade1.conv3", "cascade2.conv2": "cascade2.conv3"}
    # a shallower student pairs with the teacher cascades at the same relative depth
    assert depth_pairs(_features(convs=3, cascades=2), _features(convs=5, cascades=4), "hint") == \
        {"cascade1.conv2": "cascade2.conv3", "cascade2.conv2": "cascade4.conv3"}
    with pytest.raises(MrdistillError, match="no cascade<i>.conv<j> features.*kwargs.pairs"):
        depth_pairs({"body": torch.zeros(1)}, _features(convs=5), "attention")


@pytest.mark.parametrize("name", ["attention", "hint", "fsp", "similarity", "correlation"])
def test_default_pairs_work_on_two_cascades(name):
    b = synthetic_batch(n=4)
    s = build_model("dccnn", convs=3, cascades=2, seed=0)(b.kspace, b.mask, return_features=True)
    t = build_model("dccnn", convs=5, cascades=2, seed=1)(b.kspace, b.mask, return_features=True)
    loss = build_kd(name)
    assert torch.isfinite(loss(s, t, b)) and len(loss.pairs) == 2
