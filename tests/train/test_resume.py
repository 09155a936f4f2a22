"""A run killed with SIGKILL (at a step, inside a checkpoint write, inside a multi-stage
distillation) and resumed ends bit-identical to an uninterrupted run: weights, log.csv, metrics."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("kill_driver.py")
TIMING = {"seconds"}  # wall-clock columns: the only ones allowed to differ

BASE = {
    "seed": 3, "progress": False, "val_metric": "psnr",
    "data": {"image_size": 32, "max_train_slices": 8, "max_eval_slices": 4, "slab": 8},
    "model": {"name": "dccnn", "kwargs": {"cascades": 2, "convs": 3, "channels": 8}},
    # 4 steps per epoch; last.pt every 3 steps and at each epoch end.
    "optim": {"epochs": 3, "batch_size": 2, "lr": 3e-3, "step_size": 2, "gamma": 0.5,
              "checkpoint_every": 3},
}


def write_config(folder: Path, name: str, **extra) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**BASE, "name": name, "out_dir": str(folder / "runs"), **extra}))
    return path


def killed(spec: str, args: list[str]) -> None:
    """Run the CLI in a subprocess that SIGKILLs itself at `spec`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(DRIVER), spec, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def metrics(run: Path) -> dict:
    """metrics.json without its timings (ms/slice)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if "ms" not in k and "second" not in k}
        return x
    return strip(json.loads((run / "metrics.json").read_text()))


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("last.pt", "best.pt"):
        wa = torch.load(a / "checkpoints" / name, weights_only=True)
        wb = torch.load(b / "checkpoints" / name, weights_only=True)
        assert wa["epoch"] == wb["epoch"] and wa["metric"] == wb["metric"]
        for key in ("model", "extra"):
            assert wa[key].keys() == wb[key].keys()
            for k in wa[key]:
                assert torch.equal(wa[key][k], wb[key][k]), (name, key, k)
    assert rows(a) == rows(b)
    assert metrics(a) == metrics(b)
    assert not list((b / "checkpoints").glob(".*.tmp")) and not list(b.glob(".*.tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted train and distill runs (in-process), the teacher of the distillation."""
    folder = tmp_path_factory.mktemp("reference")
    cfg = write_config(folder, "train")
    assert run_cli_plain(["train", "--config", cfg]) == 0
    teacher = folder / "runs" / "train" / "checkpoints" / "best.pt"
    dcfg = write_config(folder, "distill", **distill_section(teacher))
    assert run_cli_plain(["distill", "--config", dcfg]) == 0
    return folder / "runs", teacher


def run_cli_plain(args) -> int:
    from mrdistill.cli.main import main
    return main([str(a) for a in args])


def distill_section(teacher: Path) -> dict:
    """Two stages: imitation with teacher correction (the teacher learns), then task + imitation."""
    return {"model": {"name": "dccnn", "kwargs": {"cascades": 2, "convs": 2, "channels": 8}},
            "distill": {"teacher": str(teacher), "stages": [
                {"epochs": 1, "task_weight": 0.0, "kd": [{"name": "imitation", "weight": 1.0}],
                 "teacher_correction": {"schedule": "joint"}},
                {"epochs": 2, "task_weight": 1.0, "kd": [{"name": "imitation", "weight": 1.0}]}]}}


@pytest.mark.parametrize("spec", ["step:7", "save:3"])
def test_killed_train_resumes_bit_identical(tmp_path, reference, capsys, spec):
    """step:7 dies mid-epoch 2 (last.pt from step 6, mid-epoch); save:3 dies half-way through writing the
    epoch-1 last.pt (its temp file stays behind)."""
    runs, _ = reference
    cfg = write_config(tmp_path, "train")
    killed(spec, ["train", "--config", str(cfg)])
    run = tmp_path / "runs" / "train"
    if spec.startswith("save"):
        assert list((run / "checkpoints").glob(".last.pt.*.tmp"))  # the cut-off write
    code, _, err = run_cli(["train", "--config", cfg], capsys)
    assert code == 2 and "--resume" in err and "--overwrite" in err
    code, _, err = run_cli(["train", "--config", cfg, "--resume"], capsys)
    assert code == 0, err
    assert_same_run(runs / "train", run)


def test_killed_distillation_resumes_inside_stage_two(tmp_path, reference, capsys):
    runs, teacher = reference
    cfg = write_config(tmp_path, "distill", **distill_section(teacher))
    killed("step:8", ["distill", "--config", str(cfg)])  # stage 1: 4 steps; last.pt at stage-2 step 3
    last = torch.load(tmp_path / "runs" / "distill" / "checkpoints" / "last.pt", weights_only=True)
    assert last["resume"]["stage"] == "stage2" and "teacher" in last["resume"]["carried"]
    code, _, err = run_cli(["distill", "--config", cfg, "--resume"], capsys)
    assert code == 0, err
    run = tmp_path / "runs" / "distill"
    assert_same_run(runs / "distill", run)
    ref = torch.load(runs / "distill" / "checkpoints" / "teacher_corrected.pt", weights_only=True)
    got = torch.load(run / "checkpoints" / "teacher_corrected.pt", weights_only=True)
    assert all(torch.equal(ref["model"][k], got["model"][k]) for k in ref["model"])


def test_resume_refuses_a_changed_config(tmp_path, reference, capsys):
    cfg = write_config(tmp_path, "train")
    killed("step:2", ["train", "--config", str(cfg)])
    code, _, err = run_cli(["train", "--config", cfg, "--resume", "--set", "optim.lr=0.1"], capsys)
    assert code == 2 and "optim.lr" in err and err.count("\n") == 1
