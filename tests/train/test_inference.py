"""Reconstruction on the fast CPU path, and evaluation timing of it where a model has one."""
import torch

from conftest import synthetic_batch
from mrdistill.data.sample import Sample, collate_samples
from mrdistill.models import build_model
from mrdistill.accel.fast_inference import InferenceDCCNN
from mrdistill.train.evaluation import evaluate_models, extra_columns
from mrdistill.train.inference import _fast_path, fast_seconds_per_slice, reconstruct


def _slices(n: int = 5, size: int = 24) -> list[Sample]:
    """A dataset of single slices (what `reconstruct` batches), cut from a synthetic batch."""
    b = synthetic_batch(n=n, size=size)
    return [Sample(b.kspace[i], b.mask[i], b.zero_filled[i], b.target[i], b.max_value[i],
                   b.volume[i], b.slice_index[i]) for i in range(n)]


def test_fast_path_is_timed_for_dccnn_only():
    data = _slices()
    seconds = fast_seconds_per_slice(build_model("dccnn", convs=3, seed=0), data)
    assert seconds is not None and 0 < seconds < 10
    assert fast_seconds_per_slice(build_model("vdsr", layers=3, channels=8), data) is None
    assert fast_seconds_per_slice(build_model("dccnn", convs=3, seed=0), data, device="meta") is None


def test_evaluation_reports_a_fast_column_only_when_asked():
    data = _slices()
    models = {"zero-filled": None, "student": build_model("dccnn", convs=3, seed=0)}
    plain = evaluate_models(models, data)
    assert plain.fast_ms_per_slice == {} and "fast ms/slice" not in extra_columns(plain)["student"]
    timed = evaluate_models(models, data, time_fast_path=True)
    columns = extra_columns(timed)
    assert columns["zero-filled"]["fast ms/slice"] == "-"
    assert float(columns["student"]["fast ms/slice"]) > 0
    # the scores come from the eager model either way
    assert torch.equal(timed.recons["student"]["v0"].prediction, plain.recons["student"]["v0"].prediction)


def test_reconstruct_on_the_fast_path_matches_eager():
    data = _slices(n=5)
    model = build_model("dccnn", convs=3, seed=0)
    assert isinstance(_fast_path(model, collate_samples(data[:2]), {}), InferenceDCCNN)
    assert _fast_path(build_model("vdsr", layers=3, channels=8), collate_samples(data[:2]), {}) is None
    eager, _ = reconstruct(model, data, batch_size=2)  # batches of 2, 2, 1
    fast, seconds = reconstruct(model, data, batch_size=2, fast=True)
    assert seconds > 0 and eager.keys() == fast.keys()
    for name in eager:
        a, b = fast[name].prediction, eager[name].prediction
        assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-5 * float(b.abs().max())
