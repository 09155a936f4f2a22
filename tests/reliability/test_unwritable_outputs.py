"""An output folder the user may not write to (a read-only folder) gives one line naming it, exit 2,
and changes nothing. (Root may write into a read-only folder, so these run only as another user;
the catalogue's `*-out-below-a-file` cases cover an unwritable output for root too.)"""

from __future__ import annotations

import os
import stat

import pytest
from catalogue_env import CONFIGS, Env, assets, env  # noqa: F401 - the catalogue's user folder

from mrdistill.cli.main import main

pytestmark = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                                reason="root can write into a read-only folder (chmod does not stop it)")

COMMANDS = {
    "train": lambda e, ro: ["train", "--config", CONFIGS / "kdmri_teacher.yaml", "--preset", "smoke",
                            "--set", f"out_dir={ro}", "--set", "name=t"],
    "demo": lambda e, ro: ["demo", "--preset", "smoke", "--out", ro / "d"],
    "prepare": lambda e, ro: ["prepare", e.nifti, "--out", ro / "p"],
    "predict": lambda e, ro: ["predict", e.nifti, "--checkpoint", e.ckpt, "--out", ro / "o"],
    "evaluate": lambda e, ro: ["evaluate", "--run", e.run, "--out", ro / "ev"],
    "study": lambda e, ro: ["study", "--preset", "smoke", "--set", f"out_dir={ro}"],
    "export": lambda e, ro: ["export", e.ckpt, "--format", "onnx", "--shape", "32", "32",
                             "--out", ro / "m.onnx"],
    "benchmark": lambda e, ro: ["benchmark", "--checkpoint", e.ckpt, "--out", ro / "b"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_read_only_output_folder_gives_one_line_and_exit_2(command, env: Env, capsys):
    ro = env.root / "read_only"
    ro.mkdir()
    (ro / "kept.txt").write_text("the user's file")
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code = main([str(a) for a in COMMANDS[command](env, ro)])
    finally:
        ro.chmod(stat.S_IRWXU)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(ro) in lines[0] and "Permission denied" in lines[0], lines[0]
    assert sorted(p.name for p in ro.iterdir()) == ["kept.txt"]
