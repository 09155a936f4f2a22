"""Smoke runs of configs/hetero_kd.yaml and configs/sr_vdsr_kd.yaml (tiny), and their bad inputs."""

from pathlib import Path

import pytest

from conftest import run_cli
from mrdistill.train.checkpoint import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = ["--set", "data.image_size=32", "--set", "data.max_train_slices=4",
         "--set", "data.max_eval_slices=4", "--set", "data.slab=8", "--no-progress"]
TINY = [*SMALL, "--set", "optim.epochs=1"]  # distill: stages set their own epochs
SWIN = ["--set", "model.kwargs.embed_dim=8", "--set", "model.kwargs.groups=1",
        "--set", "model.kwargs.heads=2", "--set", "model.kwargs.window=4"]


def one_stage(kd: str, extra: str = "") -> list[str]:
    return ["--set", f"distill.stages=[{{epochs: 1, kd: [{kd}]{extra}}}]"]


def test_hetero_kd_smoke(tmp_path, capsys):
    out = ["--set", f"out_dir={tmp_path}", "--preset", "smoke", "--no-progress"]
    code, stdout, _ = run_cli(["train", "--config", CONFIGS / "hetero_teacher.yaml", *out], capsys)
    assert code == 0 and "| bicubic |" in stdout
    teacher = tmp_path / "hetero_teacher" / "checkpoints" / "best.pt"
    code, stdout, _ = run_cli(["distill", "--config", CONFIGS / "hetero_kd.yaml", *out,
                               "--set", f"distill.teacher={teacher}"], capsys)
    assert code == 0 and "| bicubic |" in stdout and "| hetero_kd |" in stdout
    corrected = tmp_path / "hetero_kd" / "checkpoints" / "teacher_corrected.pt"
    assert load_model(corrected).input_kind == "lowres"
    log = (tmp_path / "hetero_kd" / "log.csv").read_text()
    assert "teacher/edge" in log and "teacher/feedback" in log and "kd/hetero_feature" in log
    # `evaluate --run` scores an SR run on SR data against bicubic.
    code, stdout, _ = run_cli(["evaluate", "--run", tmp_path / "hetero_kd"], capsys)
    assert code == 0 and "| bicubic |" in stdout


def test_sr_vdsr_kd_smoke(tmp_path, capsys):
    out = ["--set", f"out_dir={tmp_path}", "--preset", "smoke", "--no-progress"]
    code, _, _ = run_cli(["train", "--config", CONFIGS / "sr_vdsr_teacher.yaml", *out], capsys)
    assert code == 0
    teacher = tmp_path / "sr_vdsr_teacher" / "checkpoints" / "best.pt"
    code, stdout, _ = run_cli(["distill", "--config", CONFIGS / "sr_vdsr_kd.yaml", *out,
                               "--set", f"distill.teacher={teacher}"], capsys)
    assert code == 0 and "| sr_vdsr_kd |" in stdout and "| bicubic |" in stdout


@pytest.mark.parametrize("overrides, message", [
    (["--set", "data.image_size=30"], "does not divide the image size"),
    (["--set", "model.kwargs.scale=2"], "upsamples x2 but data.superres.scale is 4"),
])
def test_bad_scale_is_one_line(tmp_path, capsys, overrides, message):
    code, _, err = run_cli(["train", "--config", CONFIGS / "sr_vdsr_teacher.yaml", *TINY,
                            "--set", f"out_dir={tmp_path}", *overrides], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unalignable_feature_pair_is_one_line(tmp_path, capsys):
    # x3: the student's level-2 U-Net map (24 px) and the teacher's token map (16 px) do not differ
    # by an integer factor.
    out = ["--set", f"out_dir={tmp_path}", "--set", "data.image_size=48",
           "--set", "data.superres.scale=3", "--set", "model.kwargs.scale=3"]
    code, _, _ = run_cli(["train", "--config", CONFIGS / "hetero_teacher.yaml", *TINY, *SWIN, *out],
                         capsys)
    assert code == 0
    teacher = tmp_path / "hetero_teacher" / "checkpoints" / "best.pt"
    code, _, err = run_cli(["distill", "--config", CONFIGS / "hetero_kd.yaml", *SMALL, *out,
                            "--set", f"distill.teacher={teacher}",
                            *one_stage("{name: hetero_feature, kwargs: {pairs: {iter2.enc2: body}}}")],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot be aligned" in err and "integer factors" in err
