"""Real `torchrun` (2 gloo processes on CPU): the same weights as one process at the same global
batch; only rank 0 writes; a 2-process job killed with SIGKILL resumes bit-for-bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mrdistill.config import load_run_config
from mrdistill.models import registry
from mrdistill.train.checkpoint import load_checkpoint
from mrdistill.train.runs import train_run
from tests.conftest import run_cli
from tests.train.test_resume import DRIVER, assert_same_run

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, **extra) -> Path:
    """8 training slices, per-rank batch 2: 2 steps per epoch (global batch 4), last.pt every 3
    steps and at each epoch end; `extra` replaces top-level sections."""
    cfg = {"name": "ddp", "seed": 3, "progress": False,
           "data": {"image_size": 32, "max_train_slices": 8, "max_eval_slices": 4, "slab": 8},
           "model": {"name": "dccnn", "kwargs": {"cascades": 1, "convs": 3, "channels": 8}},
           "optim": {"epochs": 2, "batch_size": 2, "lr": 0.003, "checkpoint_every": 3}, **extra}
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def torchrun(args: list[str], nproc: int = 2, timeout: float = 240,
             script: Path | None = None) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node nproc -m mrdistill.cli.main ARGS` (or `SCRIPT ARGS`),
    this checkout first on the path, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    entry = [str(script)] if script else ["-m", "mrdistill.cli.main"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", *entry, *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: torchrun passes it on to its workers (each in a session of its
        # own, which a kill of torchrun alone would leave running).
        proc.terminate()
        out, err = proc.communicate(timeout=60)
        raise AssertionError(f"torchrun still running after {timeout} s (a hang?): {err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, Path]:
    """An uninterrupted 2-rank run: (its config, its run folder). In channels_last, so that DDP
    also averages the gradients of the compiled weight-gradient kernel (accel.native_conv) where
    this machine builds it."""
    folder = tmp_path_factory.mktemp("two")
    config = _config(folder, optim={"epochs": 2, "batch_size": 2, "lr": 0.003, "checkpoint_every": 3,
                                    "channels_last": True})
    proc = torchrun(["train", "--config", config, "--set", f"out_dir={folder / 'runs'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run: ") == 1  # one report, from rank 0
    return config, folder / "runs" / "ddp"


def test_two_ranks_with_batch_b_equal_one_process_with_batch_2b(tmp_path, two_ranks) -> None:
    config, two = two_ranks
    one = load_run_config(config, [f"out_dir={tmp_path / 'one'}", "optim.batch_size=4"])
    train_run(one)
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(two / "checkpoints" / name)
        b = load_checkpoint(tmp_path / "one" / "ddp" / "checkpoints" / name)
        assert a["epoch"] == b["epoch"]
        diff = weight_diff(a, b)
        # Float tolerance: summation order differs (two half-batch means averaged by DDP); Adam
        # turns rounding in near-zero gradients into up to a fraction of one lr-sized step
        # (measured: max 2.6e-5 after one epoch). Ranks that did not average their gradients
        # differ by whole steps (~lr = 3e-3) almost everywhere.
        assert diff.max() < 1e-4 and diff.median() < 1e-6
    log = (two / "log.csv").read_text().splitlines()
    assert len(log) == 3  # header + 2 epochs, written once
    leftovers = [p.name for p in two.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_killed_two_rank_run_resumes_bit_identical(tmp_path, two_ranks, capsys) -> None:
    """Both ranks and the torchrun agent SIGKILLed after step 4 (last.pt from step 3, the middle
    of epoch 2); `torchrun ... --resume` ends with the uninterrupted 2-rank run's weights, log and
    metrics exactly: the same ranks redo the same steps with the same all-reduces (gloo sums two
    operands in a fixed order), so nothing but the interruption differs."""
    config, reference = two_ranks
    args = ["train", "--config", config, "--set", f"out_dir={tmp_path / 'runs'}"]
    proc = torchrun(["job:4", *args], script=DRIVER)
    assert proc.returncode == -9, proc.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["resume"]["position"]["step"] == 3 and last["resume"]["position"]["batch"] == 1
    # One process cannot continue it (its global batch would differ); the folder stays resumable.
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert code == 2 and "2 process(es)" in err and err.count("\n") == 1
    proc = torchrun([*args, "--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(reference, run)


def weight_diff(a: dict, b: dict) -> torch.Tensor:
    """|a - b| of two checkpoints' model weights, flattened."""
    return torch.cat([(a["model"][k] - v).abs().flatten() for k, v in b["model"].items()])


def test_a_nan_on_one_rank_makes_every_rank_skip_then_stop(tmp_path, monkeypatch, capsys) -> None:
    """Rank 1 alone gets a NaN output at steps 2 and 4; with skip_nonfinite=1 both ranks skip
    step 2 together and stop together at step 4 (before: rank 1 skipped DDP's gradient all-reduce
    that rank 0 waited in), last.pt from step 3 intact. One process whose whole batch is NaN at the
    same steps ends in the same place with the same weights (float tolerance, as above)."""
    kwargs = {"cascades": 1, "convs": 3, "channels": 8, "nan_ranks": [1], "nan_at": [1, 3]}
    config = _config(tmp_path, plugins=["tests.train.nan_plugin"],
                     model={"name": "nan_dccnn", "kwargs": kwargs},
                     optim={"epochs": 2, "batch_size": 2, "lr": 0.003, "checkpoint_every": 3,
                            "skip_nonfinite": 1})
    proc = torchrun(["train", "--config", config, "--set", f"out_dir={tmp_path / 'two'}"])
    assert proc.returncode != 0
    assert proc.stderr.count("non-finite loss at step 4") == 2, proc.stderr[-3000:]  # both ranks
    two = load_checkpoint(tmp_path / "two" / "ddp" / "checkpoints" / "last.pt")
    assert two["resume"]["position"]["step"] == 3 and two["resume"]["position"]["skipped"] == 1
    assert all(torch.isfinite(v).all() for v in two["model"].values())

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # the plugin stays here
    monkeypatch.delitem(sys.modules, "tests.train.nan_plugin", raising=False)
    code, _, err = run_cli(["train", "--config", config, "--set", f"out_dir={tmp_path / 'one'}",
                            "--set", "optim.batch_size=4", "--set", "model.kwargs.nan_ranks=[0]"], capsys)
    assert code == 2 and "non-finite loss at step 4" in err
    one = load_checkpoint(tmp_path / "one" / "ddp" / "checkpoints" / "last.pt")
    diff = weight_diff(two, one)
    assert diff.max() < 1e-4 and diff.median() < 1e-6
