"""The quality-speed front (`mrdistill study` with a `students` list): end to end on the smoke
preset, on a fastMRI-format folder, its planning (teacher data, equal steps), the answer, and bad
input."""

from __future__ import annotations

import csv
import json
import math
import struct
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from mrdistill.config import to_dict
from mrdistill.study.front import plan_front_cells
from mrdistill.study.front_config import FrontConfig, load_front_config
from mrdistill.study.front_table import answer_lines, gain_lines, gain_markdown

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_fixtures import write_fastmri_folder  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DCCNN = CONFIGS / "front_dccnn.yaml"
COLUMNS = ["student", "variant", "seeds", "psnr_mean", "psnr_sd", "ssim_mean", "ssim_sd", "params",
           "gflops", "flop_ratio", "ms_eager", "speedup_eager", "ms_fast", "speedup_fast",
           "ms_onnxruntime", "speedup_onnxruntime"]


def _sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_smoke_front_end_to_end(tmp_path, capsys):
    out = tmp_path / "front"
    code, stdout, err = run_cli(["study", "--config", DCCNN, "--preset", "smoke", "--out", out,
                                 "--no-progress"], capsys)
    assert code == 0, err
    for name in ("front.csv", "front_seeds.csv", "front.md", "front.png", "front.yaml",
                 "front_benchmark.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "front.csv")))
    assert list(rows[0]) == COLUMNS
    assert [(r["student"], r["variant"]) for r in rows] == [
        ("zero-filled", "zero-filled"), ("teacher", "teacher"),
        ("dccnn(channels=4)", "plain"), ("dccnn(channels=4)", "KD"),
        ("dccnn(convs=2,channels=2)", "plain"), ("dccnn(convs=2,channels=2)", "KD")]
    by = {(r["student"], r["variant"]): r for r in rows}
    teacher = by["teacher", "teacher"]
    assert float(teacher["flop_ratio"]) == 1.0 and float(teacher["speedup_eager"]) == 1.0
    for r in rows[2:]:
        assert float(r["flop_ratio"]) > 1 and int(r["params"]) < int(teacher["params"])
        assert float(r["ms_eager"]) > 0 and float(r["ms_fast"]) > 0 and float(r["ms_onnxruntime"]) > 0
        assert r["psnr_sd"] == "n/a"  # one seed: no spread to report
    # The answer, recomputed from the CSV: the fewest-FLOPs student within delta of the teacher.
    floor = float(teacher["psnr_mean"]) - 0.3
    for variant in ("plain", "KD"):
        near = [r for r in rows[2:] if r["variant"] == variant and float(r["psnr_mean"]) >= floor]
        want = (f"- {variant}: {min(near, key=lambda r: float(r['gflops']))['student']}, " if near
                else f"- {variant}: none within 0.3 dB")
        assert want in stdout
    assert f"Smallest student within 0.3 dB of the teacher ({float(teacher['psnr_mean']):.2f} dB)" in stdout
    width, height = _png_size(out / "front.png")
    assert width > 500 and height > 200
    seeds = list(csv.DictReader(open(out / "front_seeds.csv")))
    assert len(seeds) == 6 and all(Path(r["cell"]).is_dir() for r in seeds if r["cell"])
    bench = json.loads((out / "front_benchmark.json").read_text())
    assert set(bench["results"]["teacher"]) == {"eager", "fast", "onnxruntime"}
    # The gains section, recomputed from the per-seed rows.
    psnr = {(r["student"], r["variant"]): float(r["psnr"]) for r in seeds}
    gain = psnr["dccnn(channels=4)", "KD"] - psnr["dccnn(channels=4)", "plain"]
    assert f"| dccnn(channels=4) | KD | {gain:+.2f} | {gain:+.2f} | n/a |" in stdout
    # Run again: every cell is reused, the outputs are rewritten from them.
    code, stdout, _ = run_cli(["study", "--config", DCCNN, "--preset", "smoke", "--out", out,
                               "--no-progress"], capsys)
    assert code == 0 and "cells trained 0, reused 5" in stdout
    assert f"cells trained in this run: {torch.get_num_threads()} torch thread(s) each" in stdout


def test_front_on_a_fastmri_folder(tmp_path, capsys):
    for split in ("singlecoil_train", "singlecoil_val"):
        write_fastmri_folder(tmp_path / "knee" / split, 2, slices=3, height=32, width=32, recon=(32, 32))
    sets = _sets("data.dataset=fastmri", f"data.path={tmp_path / 'knee'}",
                 f"data.fastmri.cache_dir={tmp_path / 'cache'}", "data.labeled_train_slices=2",
                 "data.mode=complex", "teacher.kwargs.in_channels=2",
                 "teacher_data={labeled_train_slices: 6}", "students=[{name: dccnn, kwargs: "
                 "{cascades: 2, convs: 2, channels: 2, in_channels: 2, residual: true}}]",
                 "latency.backends=[eager]", "latency.repeats=1")
    code, stdout, err = run_cli(["study", "--config", DCCNN, "--preset", "smoke", *sets,
                                 "--out", tmp_path / "front", "--no-progress"], capsys)
    assert code == 0, err
    assert "students: 2 fully sampled training slices + 4 undersampled-only" in stdout
    rows = list(csv.DictReader(open(tmp_path / "front" / "front.csv")))
    assert [r["variant"] for r in rows] == ["zero-filled", "teacher", "plain", "KD"]
    assert all(math.isfinite(float(r["psnr_mean"])) for r in rows)


def test_teacher_data_and_equal_steps(tmp_path):
    cfg = load_front_config(DCCNN, overrides=[f"out_dir={tmp_path}", "seeds=[1,2]"])
    cells = plan_front_cells(cfg, labeled=10, seen=78)
    teacher, *students = cells
    assert teacher.cfg.data.labeled_train_slices == 40
    assert {c.cfg.data.labeled_train_slices for c in students} == {10}
    assert len(students) == 6 * 2 * 2  # sizes x (plain, KD) x seeds
    plain = next(c for c in students if c.variant == "plain").cfg.optim
    plain_steps = plain.epochs * math.ceil(10 / plain.batch_size)
    for c in students:
        if c.variant == "KD":
            (stage,) = c.cfg.distill.stages
            assert stage.max_steps == plain_steps and stage.kd[0].name == "imitation"
            assert stage.epochs * math.ceil(78 / c.cfg.optim.batch_size) >= plain_steps
            assert c.teacher == "teacher"


def test_shipped_config_is_the_defaults():
    assert json.dumps(to_dict(load_front_config(DCCNN)), sort_keys=True) == \
        json.dumps(to_dict(FrontConfig()), sort_keys=True)


def _line(student, variant, psnr, gflops, params=10, speed=2.0):
    return {"student": student, "variant": variant, "psnr_mean": psnr, "gflops": gflops,
            "params": params, "flop_ratio": 4.0 / gflops, "speedup_eager": speed}


def _seed(student, variant, seed, psnr):
    return {"student": student, "variant": variant, "seed": seed, "cell": "", "psnr": psnr}


def test_gains_are_paired_by_seed():
    rows = [_seed("teacher", "teacher", 42, 35.0),
            _seed("s", "plain", 42, 33.0), _seed("s", "plain", 43, 34.0), _seed("s", "plain", 44, 33.0),
            _seed("s", "KD", 42, 33.5), _seed("s", "KD", 43, 34.7), _seed("s", "KD", 44, 33.3),
            _seed("t", "plain", 42, 35.5), _seed("t", "KD", 42, 35.4), _seed("t", "KD", 43, 40.0)]
    s, t = gain_lines(rows, ["KD"])
    assert s["gains"] == pytest.approx([0.5, 0.7, 0.3]) and s["gain_mean"] == pytest.approx(0.5)
    assert s["gain_sd"] == pytest.approx(0.2) and s["gain_in_sd"] == pytest.approx(2.5)
    assert s["gap"] == pytest.approx(35.0 - 100 / 3) and s["share_of_gap"] == pytest.approx(0.5 / (5 / 3))
    # Seed 43 of t has no plain partner; a plain student above the teacher has no gap to share.
    assert t["gains"] == pytest.approx([-0.1]) and t["gain_sd"] is None and t["share_of_gap"] is None
    text = "\n".join(gain_markdown([s, t]))
    assert "| s | KD | +0.50, +0.70, +0.30 | +0.50 ± 0.20 | 2.5 | 1.67 | 30 % |" in text
    assert "- KD: above the plain student at 1 of 2 sizes" in text


def test_answer_picks_the_fewest_flops_within_delta():
    lines = [_line("teacher", "teacher", 30.0, 4.0, 100, 1.0), _line("a", "plain", 29.8, 2.0),
             _line("b", "plain", 29.0, 0.5), _line("a", "KD", 29.9, 2.0), _line("b", "KD", 29.75, 0.5)]
    text = "\n".join(answer_lines(lines, 0.3, ["plain", "KD", "other"]))
    assert "- plain: a, 29.80 dB (-0.20 dB), 2.0x fewer FLOPs, speed-up over the teacher: eager 2.00x" in text
    assert "- KD: b, 29.75 dB (-0.25 dB), 8.0x fewer FLOPs" in text
    assert "- other: none within 0.3 dB" in text
    assert "- plain: none within 0.1 dB" in "\n".join(answer_lines(lines, 0.1, ["plain"]))


@pytest.mark.parametrize("extra, message", [
    (["students=[]"], "front.students: the list is empty"),
    (["students=[{name: dccnn, kwargs: {cascades: 2, convs: 3, channels: 16, in_channels: 1}}]"],
     "front.students: dccnn(channels=16) is larger than the teacher"),
    (["students=[{name: dccnn, kwargs: {cascades: 4, convs: 3, channels: 8, in_channels: 1, "
      "residual: true}}]"], "front.students: dccnn(cascades=4) is larger than the teacher"),
    (["delta=-0.1"], "front.delta: expected a finite number >= 0, got -0.1"),
    (["recipes=[{label: plain, kd: [{name: imitation}]}]"], "other than 'plain'"),
    (["recipes=[{label: X, kd: [{name: hint, kwargs: {pairs: {cascade1.conv9: cascade1.conv3}}}]}]"],
     "student has no feature 'cascade1.conv9'"),
    (["latency.backends=[fast]"], "front.latency.backends must include eager"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, extra, message):
    code, _, err = run_cli(["study", "--config", DCCNN, "--preset", "smoke", *_sets(*extra),
                            "--out", tmp_path / "front", "--no-progress"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written
