import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrdistill.atomic import atomic_write_text
from mrdistill.errors import MrdistillError
from mrdistill.rundir import MARKER, claim, is_ours, open_output


def _old_run(path: Path) -> Path:
    with claim(path, command="test") as out:
        atomic_write_text(out.path / "best.pt", "old")  # written by mrdistill: in the marker's record
    return path


def test_a_new_folder_gets_the_marker(tmp_path):
    with claim(tmp_path / "a" / "b") as out:
        assert is_ours(out.path) and (out.path / MARKER).is_file()


def test_overwrite_replaces_only_after_commit_and_restores_on_failure(tmp_path):
    run = _old_run(tmp_path / "run")
    with pytest.raises(MrdistillError, match="boom"):
        with claim(run, overwrite=True) as out:
            (out.path / "new.txt").write_text("new")
            assert not (run / "best.pt").exists()  # moved aside, not deleted
            raise MrdistillError("boom")
    assert (run / "best.pt").read_text() == "old" and not (run / "new.txt").exists()
    with claim(run, overwrite=True) as out:
        (out.path / "new.txt").write_text("new")
    assert (run / "new.txt").exists() and not (run / "best.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing left aside


def test_failure_after_commit_keeps_the_new_run(tmp_path):
    run = _old_run(tmp_path / "run")
    with pytest.raises(RuntimeError):
        with claim(run, overwrite=True) as out:
            out.commit()
            (out.path / "last.pt").write_text("new")
            raise RuntimeError("diverged")
    assert (run / "last.pt").exists() and not (run / "best.pt").exists()


def test_without_overwrite_a_non_empty_folder_is_refused(tmp_path):
    run = _old_run(tmp_path / "run")
    with pytest.raises(MrdistillError, match="already holds results; pass --overwrite"):
        open_output(run)


def test_overwrite_refuses_folders_mrdistill_did_not_create(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(MrdistillError, match="did not create"):
        open_output(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").exists()


@pytest.mark.parametrize("where", ["cwd", "parent", "home", "root"])
def test_overwrite_refuses_dangerous_folders(tmp_path, monkeypatch, where):
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    (work / MARKER).write_text("{}")
    (work / "notes.txt").write_text("x")
    (tmp_path / "work" / MARKER).write_text("{}")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "work"))
    target = {"cwd": Path("."), "parent": Path(".."), "home": tmp_path / "work", "root": Path("/")}[where]
    with pytest.raises(MrdistillError, match="refusing to replace"):
        open_output(target, overwrite=True)
    assert (work / MARKER).exists()


def test_an_output_that_is_or_contains_an_input_is_refused(tmp_path):
    inputs = tmp_path / "scans"
    inputs.mkdir()
    (inputs / "a.nii.gz").write_text("x")
    for out in (inputs, tmp_path):
        with pytest.raises(MrdistillError, match="is \\(or contains\\) the input"):
            open_output(out, overwrite=True, inputs=[inputs / "a.nii.gz"])
    assert (inputs / "a.nii.gz").exists()


def test_an_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(MrdistillError, match="is a file, not a folder"):
        open_output(tmp_path / "f", overwrite=True)
    assert (tmp_path / "f").read_text() == "x"


def test_resume_reuses_the_folder_and_never_removes_it(tmp_path):
    run = _old_run(tmp_path / "run")
    with pytest.raises(RuntimeError):
        with claim(run, resume=True) as out:
            assert out.reused
            raise RuntimeError
    assert (run / "best.pt").read_text() == "old"
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x").write_text("x")
    with pytest.raises(MrdistillError, match="cannot resume"):
        open_output(tmp_path / "foreign", resume=True)


def _killed(code: str, run: Path) -> None:
    """Run `code` (with `run` and rundir's names in scope) in a process that is then killed
    (os._exit skips every cleanup, as SIGKILL does)."""
    script = (f"import os\nfrom pathlib import Path\nfrom mrdistill.rundir import *\n"
              f"run = Path({str(run)!r})\n{code}\nos._exit(9)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == 9


def test_a_kill_during_an_uncommitted_overwrite_is_undone_by_the_next_claim(tmp_path):
    run = _old_run(tmp_path / "run")
    _killed("out = open_output(run, overwrite=True)\n(out.path / 'half.pt').write_text('new')", run)
    assert not (run / "best.pt").exists() and len(list(tmp_path.glob(".run.replaced-*"))) == 1
    with pytest.warns(UserWarning, match="killed while replacing this folder; its previous contents are restored"):
        with claim(run, resume=True) as out:
            assert out.reused
    assert (run / "best.pt").read_text() == "old" and not (run / "half.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    # killed between setting the old folder aside and creating the new one: it comes back too
    _killed("os.replace(run, run.parent / f'.run.replaced-{os.getpid()}-0123abcd')", run)
    with pytest.warns(UserWarning), pytest.raises(MrdistillError, match="already holds results"):
        open_output(run)
    assert (run / "best.pt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_kill_after_commit_finishes_removing_the_replaced_folder(tmp_path):
    run = _old_run(tmp_path / "run")
    _killed("os.replace(run, run.parent / f'.run.removing-{os.getpid()}-0123abcd')", run)
    mine = tmp_path / f".run.removing-{os.getpid()}-0123abcd"  # a removal in progress (alive)
    mine.mkdir()
    with claim(run) as out:
        (out.path / "new.pt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", mine.name])


def test_a_folder_set_aside_is_never_restored_over_the_users_files(tmp_path):
    run = _old_run(tmp_path / "run")
    _killed("os.replace(run, run.parent / f'.run.replaced-{os.getpid()}-0123abcd')", run)
    run.mkdir()
    (run / "thesis.tex").write_text("mine")
    with pytest.raises(MrdistillError, match=r"killed while replacing it, and its previous contents are kept in "
                                             r".*\.run\.replaced-\d+-0123abcd; move that back"):
        open_output(run, resume=True)
    assert (run / "thesis.tex").read_text() == "mine"
    assert (next(tmp_path.glob(".run.replaced-*")) / "best.pt").read_text() == "old"


def test_resuming_removes_stale_temporaries_of_killed_writes_only(tmp_path):
    run = _old_run(tmp_path / "run")
    (run / "checkpoints").mkdir()
    _killed("from mrdistill.atomic import _temp_name\n"
            "_temp_name(run / 'checkpoints' / 'last.pt').write_bytes(b'half')\n"
            "_temp_name(run / 'log.csv').write_bytes(b'half')", run)
    assert len([p for p in run.rglob(".*.tmp")]) == 2
    (run / ".notes.tmp").write_text("the user's")  # not a name mrdistill writes
    with claim(run, resume=True):
        pass
    assert sorted(p.name for p in run.rglob("*") if p.name.startswith(".")) == [MARKER, ".notes.tmp"]


def test_overwrite_deletes_nothing_mrdistill_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / MARKER).write_text("")  # an empty marker: it records nothing
    (mine / "thesis.tex").write_text("my thesis")
    with pytest.raises(MrdistillError, match=r"mine holds files mrdistill did not write: thesis.tex; "):
        open_output(mine, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "my thesis"
    run = _old_run(tmp_path / "run")
    (run / "figures").mkdir()
    atomic_write_text(run / "figures" / "a.png", "png")
    for name in ("notes.md", "figures/mine.png", "figures/more.txt", "x.txt"):
        (run / name).write_text("mine")
    with pytest.raises(MrdistillError, match=r"figures/mine.png, figures/more.txt, notes.md and 1 more"):
        open_output(run, overwrite=True)
    for name in ("notes.md", "figures/mine.png", "figures/more.txt", "x.txt"):
        (run / name).unlink()
    with claim(run, overwrite=True) as out:  # only recorded files (and empty folders) left
        atomic_write_text(out.path / "new.pt", "new")
    assert sorted(p.name for p in run.iterdir()) == [MARKER, "new.pt"]


def test_a_folder_holding_only_the_marker_counts_as_empty(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text("{}\n")  # a run killed before its first write
    with claim(run, command="train") as out:
        assert not out.reused
        atomic_write_text(out.path / "config.yaml", "x")
    assert (run / "config.yaml").is_file()
