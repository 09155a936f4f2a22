"""Training batches: worker count never changes results; ranks get disjoint, grouped shards."""

from __future__ import annotations

import torch

from mrdistill.config import DataConfig, OptimConfig
from mrdistill.data.build import make_datasets
from mrdistill.data.datasets import MixedDataset
from mrdistill.distill import DistillObjective
from mrdistill.models import build_model
from mrdistill.train.batches import loader_options, make_loader, rank_part
from mrdistill.train.loop import fit
from mrdistill.train.plan import StagePlan


def _train(tmp_path, tiny_data: DataConfig, workers: int) -> dict[str, torch.Tensor]:
    tiny_data.num_workers = workers
    tiny_data.mask.fresh_train_masks = True  # the epoch must reach the workers' data set copies
    ds = make_datasets(tiny_data, seed=3)
    model = build_model("dccnn", cascades=1, convs=3, channels=8, seed=0)
    run_dir = tmp_path / f"w{workers}"
    run_dir.mkdir()
    fit(model, DistillObjective(), ds["train"], ds["val"], StagePlan(OptimConfig(epochs=2, batch_size=3),
        model_name="dccnn", model_kwargs={}, seed=3, data=tiny_data, progress=False), run_dir)
    return model.state_dict()


def test_weights_do_not_depend_on_the_worker_count(tmp_path, tiny_data) -> None:
    inline, workers = _train(tmp_path, tiny_data, 0), _train(tmp_path, tiny_data, 2)
    assert all(torch.equal(inline[k], workers[k]) for k in inline)


def test_ranks_get_disjoint_grouped_shards_of_the_same_global_batches(tiny_data) -> None:
    tiny_data.labeled_train_slices = 4
    ds = make_datasets(tiny_data)
    mixed = MixedDataset(ds["train"], ds["unlabeled"])
    whole = [b.slice_index for b in make_loader(mixed, 4, seed=1)]
    ranks = [list(make_loader(mixed, 2, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    for full, b0, b1 in zip(whole, *ranks):
        assert b0.slice_index + b1.slice_index == full  # one process with batch 4 = 2 ranks x 2
        assert (b0.target is None) == (b1.target is None)  # a global batch never mixes groups


def test_short_last_batch_is_shared_by_every_rank() -> None:
    assert rank_part([7], 1, 2) == [7] and rank_part([5, 6, 7], 1, 2) == [7, 5]
    assert rank_part([1, 2, 3, 4], 0, 2) == [1, 2]


def test_pinned_memory_only_on_cuda() -> None:
    assert not loader_options(DataConfig(), torch.device("cpu"))["pin_memory"]
    assert loader_options(DataConfig(), torch.device("cuda"))["pin_memory"]


def test_a_pass_can_start_mid_epoch_with_the_same_order(tiny_data) -> None:
    ds = make_datasets(tiny_data)
    whole, resumed = make_loader(ds["train"], 2, seed=4), make_loader(ds["train"], 2, seed=4)
    resumed.batch_sampler.skip = 2
    assert [b.slice_index for b in resumed] == [b.slice_index for b in whole][2:]
    assert [b.slice_index for b in resumed] == [b.slice_index for b in whole]  # next pass: whole
