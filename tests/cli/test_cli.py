"""One smoke test per command, and one clear line + exit code 2 for each kind of bad input."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import run_cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = ["--set", "data.image_size=32", "--set", "data.max_train_slices=8",
         "--set", "data.max_eval_slices=4", "--no-progress"]
TINY = [*SMALL, "--set", "optim.epochs=1"]  # distill: stages set their own epochs


def test_list(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and "dccnn" in out and "attention" in out


def test_main_puts_the_warning_format_back(capsys):
    """In-process callers keep their own warning format: main() swaps it only while it runs."""
    before = warnings.formatwarning
    assert run_cli(["list"], capsys)[0] == 0
    assert warnings.formatwarning is before


def test_demo_smoke(tmp_path, capsys):
    code, out, _ = run_cli(["demo", "--preset", "smoke", "--out", tmp_path / "d", "--no-progress"],
                           capsys)
    assert code == 0
    for row in ("zero-filled", "teacher", "student", "distilled"):
        assert f"| {row} |" in out
    assert "| ms/slice | fast ms/slice |" in out  # the students' speed on the fast CPU path too
    assert (tmp_path / "d" / "report.md").exists() and list((tmp_path / "d" / "figures").glob("*.png"))
    # The gain line, recomputed from metrics.json; the teacher trained on its own, larger data.
    scores = json.loads((tmp_path / "d" / "metrics.json").read_text())["models"]
    gain = scores["distilled"]["psnr"]["mean"] - scores["student"]["psnr"]["mean"]
    report = (tmp_path / "d" / "report.md").read_text()
    assert f"distilled - plain student: {gain:+.2f} dB PSNR (seed 42)" in report
    assert "teacher: 12 fully sampled training slices (its own, larger collection" in report
    # Beyond the corpus: every model on the held-out real images, per image, with figures.
    assert "held-out real images (no recipe trains on them; 5:" in report
    held = (tmp_path / "d" / "heldout" / "report.md").read_text()
    assert "## Per image (PSNR dB / SSIM)" in held and "| small_t2_se |" in held
    code, _, err = run_cli(["demo", "--preset", "smoke", "--out", tmp_path / "d"], capsys)
    assert code == 2 and "already holds results" in err
    code, _, err = run_cli(["demo", "--preset", "smoke", "--out", tmp_path / "e",
                            "--set", "data.augment.nope=1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "data.augment: unknown key 'nope'" in err
    assert not (tmp_path / "e").exists()


def test_train_distill_evaluate(tmp_path, capsys):
    # --out names the run folder itself (train and distill, as every command that writes)
    code, _, _ = run_cli(["train", "--config", CONFIGS / "kdmri_teacher.yaml", *TINY,
                          "--out", tmp_path / "runs" / "t1", "--set", "model.kwargs.cascades=2"], capsys)
    assert code == 0
    teacher = tmp_path / "runs" / "t1" / "checkpoints" / "best.pt"
    assert teacher.is_file() and not (tmp_path / "runs" / "kdmri_teacher").exists()
    code, out, _ = run_cli(["distill", "--config", CONFIGS / "kdmri_kd.yaml", *SMALL,
                            "--set", f"out_dir={tmp_path}",
                            "--set", "model.kwargs.cascades=2", "--set", f"distill.teacher={teacher}",
                            "--set", "distill.stages=" +
                            "[{epochs: 1, kd: [{name: imitation}]}]"], capsys)
    assert code == 0
    # the distillation's report scores its teacher on the same test data
    metrics = json.loads((tmp_path / "kdmri_kd" / "metrics.json").read_text())["models"]
    assert list(metrics) == ["zero-filled", "teacher", "kdmri_kd"] and "| teacher |" in out
    code, stdout, _ = run_cli(["evaluate", "--run", tmp_path / "kdmri_kd"], capsys)
    assert code == 0 and "kdmri_kd" in stdout
    assert (tmp_path / "kdmri_kd" / "evaluation" / "per_slice.csv").exists()
    index = (tmp_path / "kdmri_kd" / "evaluation" / "figures" / "index.md").read_text()
    assert index.count(".png](") == len(list((tmp_path / "kdmri_kd" / "evaluation" / "figures").glob("*.png"))) > 0
    # the teacher as a foreign model: one more row, the same numbers as in the distill report
    code, stdout, err = run_cli(["evaluate", "--run", tmp_path / "kdmri_kd", "--out", tmp_path / "ev_t",
                                 "--weights", teacher, "--format", "mrdistill"], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "ev_t" / "metrics.json").read_text())["models"]
    assert list(scored) == ["zero-filled", "best.pt", "kdmri_kd"]
    assert scored["best.pt"]["psnr"] == metrics["teacher"]["psnr"]
    code, _, err = run_cli(["evaluate", "--run", tmp_path / "kdmri_kd", "--out", tmp_path / "ev_bad",
                            "--model", "dccnn", "--set", "cascades=3", "--weights", teacher,
                            "--format", "mrdistill"], capsys)
    assert code == 2 and "best.pt" in err and not (tmp_path / "ev_bad").exists()
    code, stdout, err = run_cli(["evaluate", "--run", tmp_path / "kdmri_kd"], capsys)
    assert code == 0 and "kdmri_kd" in stdout and "incomplete" not in stdout + err
    assert (tmp_path / "kdmri_kd" / "evaluation" / "per_slice.csv").exists()
    # the state a run killed after its first of 3 epochs leaves: last.pt at epoch 1, no test report
    run = tmp_path / "runs" / "t1"
    (run / "metrics.json").unlink()
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 1\n", "epochs: 3\n", 1))
    code, stdout, err = run_cli(["evaluate", "--run", run], capsys)
    assert code == 0 and "| zero-filled |" in stdout
    assert err.strip() == f"mrdistill: note: {run} is incomplete: epoch 1 of 3; resume it with --resume to finish it"
    assert "checkpoint: best.pt (incomplete: epoch 1 of 3 of the run)" in (run / "evaluation" / "report.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--set", "data.mask.kind=spiral"], "data.mask.kind: expected one of 'kdmri'"),
    (["--set", "data.mask.acceleration=1"], "acceleration"),
    (["--set", "data.imgsize=3"], "unknown key 'imgsize'"),
])
def test_bad_config_gives_one_line_and_exit_2(tmp_path, capsys, extra, message):
    code, _, err = run_cli(["train", "--config", CONFIGS / "kdmri_student.yaml", *TINY,
                            "--set", f"out_dir={tmp_path}", *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_checkpoint_and_unreadable_file(tmp_path, capsys):
    code, _, err = run_cli(["distill", "--config", CONFIGS / "kdmri_kd.yaml", *SMALL,
                            "--set", f"out_dir={tmp_path}", "--set", "distill.teacher=nope.pt"], capsys)
    assert code == 2 and "checkpoint not found: nope.pt" in err
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\x00\xff: [unclosed")
    code, _, err = run_cli(["train", "--config", bad], capsys)
    assert code == 2 and "bad.yaml: the config file is not UTF-8 text (byte 0xff at offset 1)" in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "mrdistill.cli.main", "demo", "--acceleration", "0.5",
                           "--preset", "smoke", "--out", "/nonexistent/x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "mrdistill: error: acceleration must be > 1, got 0.5"
