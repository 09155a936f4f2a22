"""`--preset NAME` applies a config file's named preset; the smoke presets run end to end."""

from pathlib import Path

import pytest

from mrdistill.cli.main import main
from mrdistill.config import load_run_config
from mrdistill.errors import MrdistillError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_preset_applies_between_file_and_overrides():
    cfg = load_run_config(CONFIGS / "kdmri_kd.yaml", ["optim.batch_size=3"], preset="smoke")
    assert cfg.data.image_size == 32 and cfg.optim.batch_size == 3 and cfg.optim.epochs == 1
    assert [s.epochs for s in cfg.distill.stages] == [1, 1]
    assert load_run_config(CONFIGS / "kdmri_kd.yaml").data.image_size == 128  # untouched without


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(MrdistillError, match="no preset 'tiny'; valid: smoke"):
        load_run_config(CONFIGS / "kdmri_kd.yaml", preset="tiny")


def test_unsupervised_smoke_presets_end_to_end(tmp_path, capsys):
    out = ["--set", f"out_dir={tmp_path}", "--no-progress", "--preset", "smoke"]
    assert main(["train", "--config", str(CONFIGS / "ssl_teacher.yaml"), *out]) == 0
    teacher = tmp_path / "ssl_teacher" / "checkpoints" / "last.pt"
    assert main(["distill", "--config", str(CONFIGS / "adaptive_kd.yaml"), *out,
                 "--set", f"distill.teacher={teacher}"]) == 0
    assert "adaptive" in capsys.readouterr().out.lower()
