"""`mrdistill study`: the smoke preset end to end, resuming, caching, and bad input."""

import csv
import json

import pytest

from conftest import run_cli
from mrdistill.errors import MrdistillError
from mrdistill.study import load_study_config, run_study
from mrdistill.study.cells import MARKER, assign_dirs, plan_cells
from mrdistill.study.table import gap_table, spread_table


class Interrupt(Exception):
    pass


def test_smoke_study_runs_resumes_and_reuses(tmp_path, capsys):
    out = ["--out", str(tmp_path / "study_sft")]  # the CLI's --out is <out_dir>/<name>
    cfg = load_study_config(None, "smoke", [f"out_dir={tmp_path}", "progress=false"])
    seen = []

    def stop_after_three(cell, trained):
        seen.append(cell.key)
        if len(seen) == 3:
            raise Interrupt  # as if the machine went away after three cells

    with pytest.raises(Interrupt):
        run_study(cfg, on_cell=stop_after_three)
    # The CLI resumes: the first three cells are reused, the other 23 trained.
    code, stdout, _ = run_cli(["study", "--preset", "smoke", *out, "--no-progress"], capsys)
    assert code == 0
    assert "cells trained 23, reused 3" in stdout
    root = tmp_path / "study_sft"
    for label in ("| ZF |", "| Teacher |", "| Student |", "| FitNets |", "| AT |", "| CC |",
                  "| FSP |", "| SP |", "mean over methods", "### 4x", "### 5x"):
        assert label in stdout
    assert " -> " in stdout.split("| AT |")[1].splitlines()[0]
    rows = list(csv.DictReader(open(root / "study.csv")))
    assert len(rows) == 2 * (1 + 2 + 1 + 10)  # per acceleration: ZF, 2 teachers, student, 5 x 2 KD
    assert {r["teacher"] for r in rows if r["row"] == "AT"} == {"std", "sft"}
    assert all(0 < float(r["vif"]) <= 1.0 + 1e-9 for r in rows)
    assert (root / "figures" / "4x.png").is_file() and (root / "figures" / "5x.png").is_file()
    assert (root / "5x" / "per_slice.csv").is_file() and (root / "report.md").is_file()
    # A cell whose run did not finish (no marker) is trained again; everything else is reused.
    markers = sorted((root / "cells").glob(f"4x-FSP-sft@42-*/{MARKER}"))
    assert len(markers) == 1
    markers[0].unlink()
    code, stdout, _ = run_cli(["study", "--preset", "smoke", *out, "--no-progress"], capsys)
    assert code == 0 and "cells trained 1, reused 25" in stdout


def test_cells_are_keyed_by_config_and_teacher(tmp_path):
    cfg = load_study_config(None, "smoke", [f"out_dir={tmp_path}", "seeds=[1,2]", "only=[AT]"])
    cells = plan_cells(cfg, 4.0)
    assign_dirs(cells, tmp_path)
    keys = [c.key for c in cells]
    assert keys == ["4x/teacher", "4x/sft", "4x/student@1", "4x/student@2", "4x/AT/std@1",
                    "4x/AT/std@2", "4x/AT/sft@1", "4x/AT/sft@2"]
    by = {c.key: c for c in cells}
    assert by["4x/AT/sft@1"].cfg.distill.init.endswith("sft_student.pt")
    assert by["4x/AT/std@1"].cfg.distill.init is None
    assert by["4x/AT/sft@1"].cfg.distill.teacher.startswith(str(by["4x/sft"].run_dir))
    # A longer teacher budget changes the teacher's hash and so every KD cell that depends on it.
    other = plan_cells(load_study_config(None, "smoke", [f"out_dir={tmp_path}", "seeds=[1,2]",
                                                         "only=[AT]", "optim.epochs=2"]), 4.0)
    assign_dirs(other, tmp_path)
    assert all(a.digest != b.digest for a, b in zip(cells, other))
    assert len({c.digest for c in cells}) == len(cells)


def test_teacher_epochs_apply_to_both_teachers_only(tmp_path):
    sets = [f"out_dir={tmp_path}", "only=[AT]", "optim.epochs=3", "teacher_epochs=7"]
    by = {c.key: c for c in plan_cells(load_study_config(None, "smoke", sets), 4.0)}
    assert by["4x/teacher"].cfg.optim.epochs == 7 and by["4x/sft"].cfg.optim.epochs == 7
    assert by["4x/student@42"].cfg.optim.epochs == 3 and by["4x/AT/std@42"].cfg.optim.epochs == 3
    residual = load_study_config(None, "cpu_residual", [f"out_dir={tmp_path}"])
    assert residual.teacher.kwargs["residual"] and residual.student.kwargs["residual"]
    assert residual.teacher_epochs == 2 * residual.optim.epochs
    with pytest.raises(MrdistillError, match="study.teacher_epochs: expected an integer in \\[1, 100000\\], got 0"):
        load_study_config(None, "smoke", ["teacher_epochs=0"])


def test_feature_stages_select_by_their_objective_unless_told(tmp_path):
    sets = [f"out_dir={tmp_path}", "only=[AT]"]
    by = {c.key: c for c in plan_cells(load_study_config(None, "smoke", sets), 4.0)}
    assert [s.selection for s in by["4x/AT/std@42"].cfg.distill.stages] == ["val_objective", "val_metric"]
    old = {c.key: c for c in plan_cells(load_study_config(None, "smoke", [*sets, "feature_select=val_metric"]), 4.0)}
    assert [s.selection for s in old["4x/AT/sft@42"].cfg.distill.stages] == ["val_metric", "val_metric"]
    with pytest.raises(MrdistillError, match="study.feature_select 'best'"):
        load_study_config(None, "smoke", ["feature_select=best"])


def test_gap_and_spread_tables():
    rows = [{"acceleration": 4.0, "row": r, "teacher": t, "seed": s, "psnr": v}
            for r, t, s, v in [("Teacher", "std", 1, 30.0), ("Teacher", "sft", 1, 30.2),
                               ("Student", "-", 1, 29.0), ("AT", "std", 1, 29.4),
                               ("AT", "std", 2, 29.6), ("AT", "sft", 1, 29.9), ("AT", "sft", 2, 30.1)]]
    table = gap_table(rows, [4.0], ["AT"])
    assert "| Student (no KD) | 1.00 |" in table and "| AT | 0.50 -> 0.00 |" in table
    spread = spread_table(rows)
    assert "| 4x | AT | std | 1, 2 | 29.50 | 0.141 | 29.40 .. 29.60 |" in spread
    assert spread_table(rows[:4]) == ""


@pytest.mark.parametrize("extra, message", [
    (["methods=[{label: X, kd: [{name: fitnet}]}]"], "unknown KD method 'fitnet'; valid: attention"),
    (["methods=[{label: H, kd: [{name: hint, kwargs: {pairs: {cascade1.conv9: cascade1.conv3}}}]}]"],
     "student has no feature 'cascade1.conv9'; valid: cascade1.conv1"),
    (["methods=[{label: H, kd: [{name: hint, kwargs: {pairs: {cascade1.conv3: cascade1.conv3}, "
      "regressor: false}}]}]"], "hint pair cascade1.conv3->cascade1.conv3: student feature (1, 48, 48)"),
    (["only=[XX]"], "unknown study method 'XX'; valid: AT, CC, FSP, FitNets, SP"),
    (["accelerations=[1]"], "study.accelerations: expected a non-empty list, each a finite number > 1"),
    (["metrics=[psnr, fid]"], "unknown metric 'fid'; valid:"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, extra, message):
    sets = [a for e in [f"out_dir={tmp_path}", *extra] for a in ("--set", e)]
    code, _, err = run_cli(["study", "--preset", "smoke", *sets, "--no-progress"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*/cells/*/cell.json"))  # failed before training anything


def test_unknown_study_key_names_the_valid_ones():
    with pytest.raises(MrdistillError, match="unknown key 'epochs'; valid: accelerations"):
        load_study_config(None, None, ["epochs=3"])


def test_default_config_file_matches_the_defaults():
    from pathlib import Path

    from mrdistill.config import to_dict
    from mrdistill.study import StudyConfig
    path = Path(__file__).resolve().parents[2] / "configs" / "study_sft.yaml"
    assert json.dumps(to_dict(load_study_config(path)), sort_keys=True) == \
        json.dumps(to_dict(StudyConfig()), sort_keys=True)


def test_fields_added_later_with_none_defaults_keep_the_hashes():
    from mrdistill.study.cells import without_nones
    assert without_nones({"a": 1, "b": None, "c": [{"d": None, "e": 2}]}) == {"a": 1, "c": [{"e": 2}]}


def test_train_cli_trains_an_sft_teacher(tmp_path, capsys):
    from pathlib import Path
    config = Path(__file__).resolve().parents[2] / "configs" / "sft_teacher.yaml"
    tiny = ["data.image_size=32", "data.max_train_slices=4", "data.max_eval_slices=2",
            "optim.epochs=1", "model.kwargs.cascades=2", "sft.student.kwargs.cascades=2",
            f"out_dir={tmp_path}"]
    code, _, _ = run_cli(["train", "--config", config, *[a for t in tiny for a in ("--set", t)],
                          "--no-progress"], capsys)
    assert code == 0
    assert (tmp_path / "sft_teacher" / "checkpoints" / "sft_student.pt").is_file()
    bad = [*tiny[:-1], "sft.student.kwargs.cascades=3", f"out_dir={tmp_path}/x"]
    code, _, err = run_cli(["train", "--config", config, *[a for t in bad for a in ("--set", t)],
                            "--no-progress"], capsys)
    assert code == 2 and "same number of cascades" in err and len(err.strip().splitlines()) == 1
