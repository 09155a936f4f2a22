"""`mrdistill train` (self-supervised teachers) and `mrdistill distill` (adaptive KD) from the shipped
configs at smoke size; no training batch ever carries a target; bad input -> one line, exit 2."""

import sys
from pathlib import Path

import pytest
import torch

import mrdistill.models.modl as modl
import mrdistill.train.batches as training_batches
from conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import write_fastmri_folder  # noqa: E402
from mrdistill.cli.main import main
from mrdistill.data.sample import collate_samples
from mrdistill.models import build_model
from mrdistill.train.checkpoint import model_payload, save_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMOKE = ["--set", "data.image_size=32", "--set", "data.max_train_slices=8", "--set",
         "data.max_eval_slices=4", "--set", "optim.epochs=1", "--no-progress"]
TEACHER = ["--set", "model.kwargs={unrolls: 2, convs: 3, channels: 8, in_channels: 2, cg_iters: 3}",
           "--set", "selfsup.acs_lines=2"]
STUDENT = ["--set", "model.kwargs.cascades=2"]


@pytest.fixture
def batches(monkeypatch):
    """Every batch the training loop builds, recorded (the loop's collate function is wrapped)."""
    seen = []

    def spy(items):
        batch = collate_samples(items)
        seen.append(batch)
        return batch

    monkeypatch.setattr(training_batches, "collate_samples", spy)
    return seen


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ssl")
    with pytest.MonkeyPatch.context() as mp:
        seen = []
        mp.setattr(training_batches, "collate_samples",
                   lambda items: seen.append(collate_samples(items)) or seen[-1])
        code = main(["train", "--config", str(CONFIGS / "ssl_teacher.yaml"), *SMOKE, *TEACHER,
                     "--set", f"out_dir={out}"])
    return out, code, seen


def test_ssl_teacher_config_trains_without_targets(teacher_run):
    out, code, seen = teacher_run
    assert code == 0
    assert seen and all(b.target is None for b in seen)  # training never saw a target
    run = out / "ssl_teacher"
    report = (run / "report.md").read_text()
    assert "ssl_teacher/teacher2" in report and (run / "checkpoints" / "last.pt").exists()
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model_name"] == "ensemble" and ckpt["model_kwargs"]["members"] == 2


@pytest.mark.parametrize("weighting, average", [("adaptive", "precompute"), ("plain", "precompute"),
                                                ("adaptive", "running")])
def test_adaptive_kd_config_distils_without_targets(teacher_run, tmp_path, capsys, batches, weighting,
                                                    average):
    out, _, _ = teacher_run
    teacher = out / "ssl_teacher" / "checkpoints" / "last.pt"
    code, stdout, _ = run_cli(["distill", "--config", CONFIGS / "adaptive_kd.yaml", *SMOKE, *STUDENT,
                               "--set", f"out_dir={tmp_path}", "--set", f"distill.teacher={teacher}",
                               "--set", f"distill.adaptive.weighting={weighting}",
                               "--set", f"distill.adaptive.average={average}"], capsys)
    assert code == 0 and "| adaptive_kd |" in stdout and "| teachers |" in stdout
    assert batches and all(b.target is None for b in batches)
    last = torch.load(tmp_path / "adaptive_kd" / "checkpoints" / "last.pt", weights_only=True)
    if weighting == "adaptive":  # the average the weights used: a positive variance, set or learnt
        assert bool(last["extra"]["kd.adaptive.seen"]) and float(last["extra"]["kd.adaptive.avg_variance"]) > 0


def test_self_supervised_student_without_distillation(tmp_path, capsys, batches):
    code, stdout, _ = run_cli(["train", "--config", CONFIGS / "ssl_teacher.yaml", *SMOKE,
                               "--set", f"out_dir={tmp_path}", "--set", "selfsup.teachers=1",
                               "--set", "model.name=dccnn", "--set", "selfsup.method=ssdu",
                               "--set", "model.kwargs={cascades: 2, in_channels: 2}"], capsys)
    assert code == 0 and "| ssl_teacher |" in stdout
    assert batches and all(b.target is None for b in batches)


@pytest.mark.parametrize("extra, message", [
    (["selfsup.method=ssdu", "selfsup.rho=1.5"],
     "selfsup.rho: expected a finite number > 0 and < 1, got 1.5"),
    (["selfsup.factors=[2.0, 1.0]"], "selfsup.factors: expected a list, each a finite number > 1, got [2.0, 1.0]"),
    (["selfsup.method=ssdu", "selfsup.acs_block=[40, 40]"], "ACS block 40x40 is larger than the image 32x32"),
    (["selfsup.acs_lines=33"], "ACS band of 33 lines is larger than the image width 32"),
    (["data.mode=real"], "needs data.mode: complex"),
])
def test_bad_selfsup_input_gives_one_line_and_exit_2(tmp_path, capsys, extra, message):
    sets = [a for e in extra for a in ("--set", e)]
    code, _, err = run_cli(["train", "--config", CONFIGS / "ssl_teacher.yaml", *SMOKE,
                            "--set", f"out_dir={tmp_path}", *sets], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ssl_teacher").exists()  # rejected before anything was written


def test_adaptive_weighting_needs_two_teachers(tmp_path, capsys):
    kwargs = {"cascades": 1, "convs": 3, "channels": 4, "in_channels": 2}
    single = tmp_path / "single.pt"
    save_checkpoint(single, model_payload(build_model("dccnn", **kwargs), "dccnn", kwargs))
    code, _, err = run_cli(["distill", "--config", CONFIGS / "adaptive_kd.yaml", *SMOKE,
                            "--set", f"out_dir={tmp_path}", "--set", f"distill.teacher={single}"], capsys)
    assert code == 2 and "adaptive weighting needs at least 2 teachers" in err
    assert len(err.strip().splitlines()) == 1


def test_multicoil_modl_ensemble_end_to_end(tmp_path, monkeypatch):
    # 4-coil fastMRI-layout files, coil_mode multi: samples carry coil maps, and the MoDL teachers,
    # the ensemble, the memoised teacher and the MoDL student all get them through run_model.
    for split in ("multicoil_train", "multicoil_val"):
        write_fastmri_folder(tmp_path / "knee" / split, 2, slices=2, coils=4, height=32, width=32,
                             recon=(32, 32))
    calls = []
    real_forward = modl.MoDL.forward
    monkeypatch.setattr(modl.MoDL, "forward",
                        lambda self, k, m, **kw: calls.append(kw.get("smaps") is not None)
                        or real_forward(self, k, m, **kw))
    data = ["--set", "data.dataset=fastmri", "--set", f"data.path={tmp_path / 'knee'}",
            "--set", "data.fastmri.challenge=multicoil", "--set", "data.fastmri.coil_mode=multi",
            "--set", f"data.fastmri.cache_dir={tmp_path / 'cache'}", "--set", f"out_dir={tmp_path}"]
    assert main(["train", "--config", str(CONFIGS / "ssl_teacher.yaml"), *SMOKE, *TEACHER, *data]) == 0
    assert calls and all(calls)  # every teacher call had coil maps
    calls.clear()
    teacher = tmp_path / "ssl_teacher" / "checkpoints" / "last.pt"
    student = ["--set", "model={name: modl, kwargs: {unrolls: 1, convs: 3, channels: 4, "
                        "in_channels: 2, cg_iters: 2}}"]
    assert main(["distill", "--config", str(CONFIGS / "adaptive_kd.yaml"), *SMOKE, *student, *data,
                 "--set", f"distill.teacher={teacher}"]) == 0
    assert calls and all(calls)
    report = (tmp_path / "adaptive_kd" / "report.md").read_text()
    assert "teachers" in report and "adaptive_kd" in report
