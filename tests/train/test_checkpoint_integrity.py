"""Checkpoints are checked before use: tensor hash, finite weights, bounded model arguments."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.train.checkpoint import load_checkpoint, load_model, model_payload, save_checkpoint
from mrdistill.train.checkpoint_integrity import INTEGRITY_KEY, MAX_INT_KWARG, tensor_digest

KWARGS = {"cascades": 1, "convs": 2, "channels": 4, "in_channels": 2}


def payload() -> dict:
    return model_payload(build_model("dccnn", seed=0, **KWARGS), "dccnn", KWARGS, epoch=3)


def test_a_saved_checkpoint_records_its_hash_and_loads(tmp_path):
    save_checkpoint(tmp_path / "c.pt", payload())
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt[INTEGRITY_KEY]["sha256"] == tensor_digest(ckpt) and len(ckpt[INTEGRITY_KEY]["sha256"]) == 64
    assert isinstance(load_model(tmp_path / "c.pt"), torch.nn.Module)


def test_flipped_bytes_in_the_weights_are_refused_naming_the_file(tmp_path):
    p = payload()
    marker = torch.arange(64, dtype=torch.float32) + 1000.0  # bytes easy to find in the file
    p["model"] = {**p["model"], "marker": marker}
    save_checkpoint(tmp_path / "c.pt", p)
    raw = bytearray((tmp_path / "c.pt").read_bytes())
    at = raw.index(marker.numpy().tobytes())
    raw[at + 17] ^= 0x40
    (tmp_path / "c.pt").write_bytes(bytes(raw))
    with pytest.raises(MrdistillError, match="c.pt: corrupted checkpoint: its tensors do not match"):
        load_checkpoint(tmp_path / "c.pt")


def test_an_old_checkpoint_without_a_hash_loads_with_a_warning(tmp_path):
    torch.save(payload(), tmp_path / "old.pt")  # as mrdistill wrote them before the hash
    with pytest.warns(UserWarning, match="old.pt: checkpoint has no integrity hash"):
        model = load_model(tmp_path / "old.pt")
    assert isinstance(model, torch.nn.Module)


def test_non_finite_weights_are_refused_with_one_line(tmp_path):
    p = payload()
    name = next(iter(p["model"]))
    p["model"][name] = torch.full_like(p["model"][name], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", p)
    with pytest.raises(MrdistillError, match=f"nan.pt: weight model.{name} holds NaN or Inf") as info:
        load_model(tmp_path / "nan.pt")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, problem", [
    ({"cascades": 200000}, "model_kwargs.cascades = 200000 is out of range"),
    ({"cascades": -3}, "model_kwargs.cascades = -3 is out of range"),
    ({"channels": [4, 4]}, "model_kwargs.channels must be a whole number"),
    ({"channels": "wide"}, "model_kwargs.channels must be a whole number"),
    ({"channels": {"a": 1}}, "model_kwargs.channels must be a whole number"),
    ({"channels": {"a": b"x"}}, "model_kwargs.channels must be a number, string, boolean, list or mapping"),
    ({"cascades": True}, "model_kwargs.cascades must be a whole number"),
    ({"dc": "nonsense"}, "model_kwargs do not build a dccnn .*unknown data consistency"),
    ({"depth": 3}, "has no argument 'depth'"),
])
def test_model_kwargs_are_checked_before_the_model_is_built(tmp_path, kwargs, problem):
    p = {"model_name": "dccnn", "model_kwargs": kwargs, "model": {}, "extra": {}}  # a 1 KB file
    save_checkpoint(tmp_path / "tiny.pt", p)
    assert (tmp_path / "tiny.pt").stat().st_size < 2048
    with pytest.raises(MrdistillError, match=f"tiny.pt: .*{problem}"):
        load_model(tmp_path / "tiny.pt")


def test_a_model_above_the_parameter_limit_is_refused_before_it_is_built(tmp_path, monkeypatch):
    import mrdistill.train.checkpoint_integrity as integrity

    monkeypatch.setattr(integrity, "MAX_PARAMETERS", 100)  # the tiny model has 150
    integrity._trial_build.cache_clear()
    save_checkpoint(tmp_path / "c.pt", payload())
    with pytest.raises(MrdistillError, match="c.pt: model_kwargs ask for a dccnn with .* parameters, "
                                             "above the limit of 100"):
        load_model(tmp_path / "c.pt")
    assert MAX_INT_KWARG >= 1024  # real widths and counts stay allowed


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('PWNED_PATH', '/nonexistent/pwned')}",))


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PWNED_PATH", str(tmp_path / "pwned"))
    torch.save({"model_name": "dccnn", "model": {}, "x": _Payload()}, tmp_path / "evil.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MrdistillError, match="cannot read checkpoint .*evil.pt"):
            load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
