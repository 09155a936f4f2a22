"""`init`: a run's model starts from a checkpoint's weights (fine-tuning on another site's data)."""

import pytest
import torch

from mrdistill.config import RunConfig, from_dict
from mrdistill.errors import MrdistillError
from mrdistill.train.checkpoint import load_checkpoint
from mrdistill.train.runs import load_init, train_run

DATA = {"image_size": 32, "max_train_slices": 8, "max_eval_slices": 4}
MODEL = {"kwargs": {"cascades": 2, "convs": 3}}


def _cfg(out, name: str, **extra) -> RunConfig:
    return from_dict(RunConfig, {"out_dir": str(out), "name": name, "progress": False, "data": DATA,
                                 "model": MODEL, "optim": {"epochs": 1, "lr": 3e-3}, **extra})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    return train_run(_cfg(out, "base", optim={"epochs": 2, "lr": 3e-3})).run_dir / "checkpoints" / "best.pt"


def test_fine_tuning_starts_from_the_checkpoint(tmp_path, trained):
    start = load_checkpoint(trained)["model"]
    # A vanishing learning rate leaves the weights where they started: the checkpoint's with
    # init, the seed's fresh ones without it.
    still = {"epochs": 1, "lr": 1e-12}
    tuned = train_run(_cfg(tmp_path, "ft", init=str(trained), optim=still)).model.state_dict()
    fresh = train_run(_cfg(tmp_path, "fresh", optim=still)).model.state_dict()
    for key, value in start.items():
        torch.testing.assert_close(tuned[key], value, atol=1e-7, rtol=0)
    assert any(not torch.allclose(fresh[k], v, atol=1e-4) for k, v in start.items())


def test_init_is_checked_before_anything_is_written(tmp_path, trained):
    with pytest.raises(MrdistillError, match=r"^init: .* holds dccnn .* not the model dccnn"):
        train_run(_cfg(tmp_path, "other", init=str(trained), model={"kwargs": {"cascades": 3, "convs": 3}}))
    with pytest.raises(MrdistillError, match="checkpoint not found"):
        train_run(_cfg(tmp_path, "missing", init=str(tmp_path / "none.pt")))
    with pytest.raises(MrdistillError, match="init .* and distill.init .* both name"):
        load_init(_cfg(tmp_path, "both", init=str(trained),
                       distill={"teacher": str(trained), "init": str(trained)}))
    assert not (tmp_path / "other").exists() and not (tmp_path / "missing").exists()
