"""Student-friendly teacher training: branches, losses, gradients, and the `train` path."""

import pytest
import torch

from conftest import synthetic_batch
from mrdistill.config import RunConfig, from_dict
from mrdistill.distill.sft import SFTObjective, check_pair, student_state
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.train.checkpoint import load_checkpoint, load_model
from mrdistill.train.runs import train_run


def test_forward_from_runs_the_remaining_cascades():
    batch = synthetic_batch()
    net = build_model("dccnn", convs=3, seed=0)
    full = net(batch.kspace, batch.mask, return_features=True)
    again = net.forward_from(batch.zero_filled, batch.kspace, batch.mask, 0, return_features=True)
    torch.testing.assert_close(again.image, full.image)
    assert again.features.keys() == full.features.keys()
    tail = net.forward_from(full.features["cascade2.out"], batch.kspace, batch.mask, 2,
                            return_features=True)
    torch.testing.assert_close(tail.image, full.image)
    assert min(tail.features) == "cascade3.conv1"  # numbering is kept, cascades 1-2 skipped
    with pytest.raises(ValueError):
        net.forward_from(batch.zero_filled, batch.kspace, batch.mask, 6)


def test_sft_loss_is_the_weighted_sum_of_three_terms():
    batch = synthetic_batch()
    teacher, student = build_model("dccnn", seed=0), build_model("dccnn", convs=3, seed=1)
    out = SFTObjective(student, 1.0, 0.5, 2.0)(teacher, batch)
    assert set(out) == {"loss", "task", "sft/branch", "sft/imitation"}
    torch.testing.assert_close(out["loss"], out["task"] + 0.5 * out["sft/branch"] + 2 * out["sft/imitation"])
    # Branch i starts from teacher cascade i's output (i = 0: the zero-filled image) and runs
    # student cascades i+1..5; imitation is the mean L1 of the branches to the teacher output.
    t = teacher(batch.kspace, batch.mask, return_features=True)
    starts = [0, 1, 2, 3, 4]
    inputs = [batch.zero_filled] + [t.features[f"cascade{i}.out"] for i in starts[1:]]
    branches = [student.forward_from(x, batch.kspace, batch.mask, i).image
                for i, x in zip(starts, inputs)]
    expected = torch.stack([torch.nn.functional.l1_loss(b, t.image) for b in branches]).mean()
    torch.testing.assert_close(out["sft/imitation"], expected)


@pytest.mark.parametrize("input_branch", [True, False])
def test_imitation_shapes_the_teacher_and_the_first_student_cascade_is_trained(input_branch):
    batch = synthetic_batch()
    teacher, student = build_model("dccnn", seed=0), build_model("dccnn", convs=3, seed=1)
    # Imitation alone: the teacher is *not* detached, so it receives gradients from that term.
    SFTObjective(student, 0.0, 0.0, 1.0, input_branch=input_branch)(teacher, batch)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in teacher.cascades[0].parameters())
    first = [p.grad for p in student.cascades[0].parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in first) == input_branch
    assert all(g is None for g in first) != input_branch


def test_incompatible_pairs_are_refused():
    with pytest.raises(MrdistillError, match="same number of cascades in teacher and student; got 5 and 3"):
        check_pair(build_model("dccnn"), build_model("dccnn", cascades=3))
    with pytest.raises(MrdistillError, match="same in_channels"):
        check_pair(build_model("dccnn"), build_model("dccnn", in_channels=2))
    with pytest.raises(MrdistillError, match="targets"):
        unlabelled = synthetic_batch()._replace(target=None)
        SFTObjective(build_model("dccnn", convs=3))(build_model("dccnn"), unlabelled)
    with pytest.raises(MrdistillError, match="no SFT student"):
        student_state({"kd.hint.x": torch.zeros(1)})


def test_train_run_with_sft_section_gives_an_ordinary_teacher_and_a_student_init(tmp_path, tiny_data):
    # Any pair of depths: here D4C2 -> D2C2.
    cfg = from_dict(RunConfig, {
        "name": "sft", "out_dir": str(tmp_path), "progress": False,
        "data": {"image_size": 32, "max_train_slices": 8, "max_eval_slices": 4},
        "model": {"name": "dccnn", "kwargs": {"cascades": 2, "convs": 4}},
        "optim": {"epochs": 1},
        "sft": {"student": {"name": "dccnn", "kwargs": {"cascades": 2, "convs": 2}}},
    })
    result = train_run(cfg)
    ckpts = tmp_path / "sft" / "checkpoints"
    teacher = load_model(ckpts / "best.pt")  # an ordinary teacher checkpoint
    assert teacher.cascades[0].convs.__len__() == 4
    for a, b in zip(teacher.state_dict().values(), result.model.state_dict().values()):
        assert torch.equal(a, b)
    student = load_model(ckpts / "sft_student.pt")
    fresh = build_model("dccnn", seed=cfg.seed + 1, cascades=2, convs=2)
    assert not torch.equal(student.cascades[0].convs[0].weight, fresh.cascades[0].convs[0].weight)
    assert "sft/imitation" in (tmp_path / "sft" / "log.csv").read_text()
    assert load_checkpoint(ckpts / "best.pt")["stage"] == "sft"
