"""log.csv keeps one header for the whole run; TensorBoard events are readable by tensorboard."""

from __future__ import annotations

import csv

import pytest

from mrdistill.train.logging import RunLog


def test_new_key_rewrites_header_so_every_row_parses(tmp_path):
    log = RunLog(tmp_path)
    log.append({"stage": "stage1", "epoch": 1, "kd/attention": 0.5})
    log.append({"stage": "stage1", "epoch": 2, "kd/attention": 0.25})
    log.append({"stage": "stage2", "epoch": 1, "task": 0.1, "kd/imitation": 0.2})
    log.append({"stage": "stage2", "epoch": 2, "task": 0.05})
    with open(tmp_path / "log.csv", newline="") as f:
        lines = f.read().splitlines()
    assert lines[0] == "stage,epoch,kd/attention,task,kd/imitation" and len(lines) == 5
    rows = list(csv.DictReader(open(tmp_path / "log.csv", newline="")))
    assert [r["kd/attention"] for r in rows] == ["0.5", "0.25", "", ""]
    assert rows[2]["kd/imitation"] == "0.2" and rows[3]["task"] == "0.05"
    assert all(None not in r for r in rows)  # no row longer than the header
    RunLog(tmp_path).reset(rows[:1])  # a resumed run keeps exactly its checkpoint's rows
    assert len(open(tmp_path / "log.csv").read().splitlines()) == 2


def test_tensorboard_events_hold_losses_metrics_lr_throughput_and_panel(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.conftest import run_cli

    code, _, err = run_cli(["train", "--config", "configs/kdmri_teacher.yaml", "--preset", "smoke",
                            "--set", f"out_dir={tmp_path}", "--set", "optim.epochs=2",
                            "--set", "logging.tensorboard=true", "--no-progress"], capsys)
    assert code == 0, err
    events = EventAccumulator(str(tmp_path / "kdmri_teacher" / "tensorboard"),
                              size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/task", "train/lr", "val/psnr", "throughput/slices_per_s"} <= scalars
    assert [e.step for e in events.Scalars("val/psnr")] == [2, 4]  # 2 steps per epoch
    assert len(events.Scalars("train/loss")) == 4
    (panel,) = events.Tags()["images"]
    image = events.Images(panel)
    assert len(image) == 2 and image[0].width == 4 * image[0].height  # 4 panels side by side
