"""The bad-input catalogue: every case must print exactly one line naming the key or file, exit 2,
print no traceback, and leave everything the user had (a sentinel file next to the output, the
previous run where there is one) untouched. Every case fails at validation, so the whole catalogue
runs in seconds (the CLI is called in-process)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalogue_env import (CONFIGS, Case, assets, cmd_argv, distill_argv, env,  # noqa: E402,F401
                           files_argv, train_argv, write_nifti_5d, write_pickle_with_code)

from mrdistill.cli.main import main  # noqa: E402

# (key, bad value, what the one line must contain) for train --set: every value out of range.
TRAIN_VALUES = [
    ("optim.lr", "-1", "optim.lr: expected a finite number > 0"),
    ("optim.lr", "0", "optim.lr"), ("optim.lr", ".nan", "optim.lr"), ("optim.lr", ".inf", "optim.lr"),
    ("optim.lr", "fast", "optim.lr: expected a number"), ("optim.lr", "[1]", "optim.lr"),
    ("optim.lr", "true", "optim.lr"), ("optim.lr", "null", "optim.lr"),
    ("optim.batch_size", "0", "optim.batch_size: expected an integer in [1, 65536]"),
    ("optim.batch_size", "-4", "optim.batch_size"), ("optim.batch_size", "2.5", "optim.batch_size"),
    ("optim.batch_size", "true", "optim.batch_size"), ("optim.batch_size", "four", "optim.batch_size"),
    ("optim.epochs", "0", "optim.epochs: expected an integer in [1, 100000]"), ("optim.epochs", "-3", "optim.epochs"),
    ("optim.epochs", "true", "optim.epochs: expected an integer, got true"),
    ("optim.epochs", "1.5", "optim.epochs"), ("optim.epochs", "null", "optim.epochs"),
    ("optim.max_steps", "-1", "optim.max_steps: expected an integer in [1, 1000000000]"),
    ("optim.max_steps", "0", "optim.max_steps"), ("optim.max_steps", "false", "optim.max_steps"),
    ("optim.grad_clip", "-1", "optim.grad_clip: expected a finite number > 0"),
    ("optim.grad_clip", "0", "optim.grad_clip"), ("optim.grad_clip", ".nan", "optim.grad_clip"),
    ("optim.weight_decay", "-1e-4", "optim.weight_decay: expected a finite number >= 0"),
    ("optim.step_size", "0", "optim.step_size"), ("optim.gamma", "0", "optim.gamma"),
    ("optim.gamma", "-0.5", "optim.gamma"), ("optim", "3", "optim: expected a mapping"),
    ("seed", "-1", "seed: expected an integer in [0, 2**63 - 1]"),
    ("seed", "1180591620717411303424", "seed"), ("seed", "1.5", "seed"), ("seed", "true", "seed"),
    ("seed", "abc", "seed"), ("name", '""', "name: expected a simple relative name"),
    ("name", "/tmp/elsewhere", "name"), ("name", "..", "name"), ("name", ".", "name"),
    ("name", "a/b", "name"), ("name", "null", "name: expected a string, got null"),
    ("name", "[a]", "name"), ("out_dir", '""', "out_dir"),
    ("data.image_size", "0", "data.image_size: expected an integer in [8, 8192]"),
    ("data.image_size", "4", "data.image_size"), ("data.image_size", "-32", "data.image_size"),
    ("data.mask.acceleration", "1", "data.mask.acceleration: expected a finite number > 1"),
    ("data.mask.acceleration", "0.5", "data.mask.acceleration"),
    ("data.mask.acceleration", "-4", "data.mask.acceleration"),
    ("data.mask.acceleration", "1e6", "data.mask: acceleration 1e+06 leaves no sampled line"),
    ("data.mask.acceleration", ".inf", "data.mask.acceleration"),
    ("data.mask.kind", "spiral", "data.mask.kind: expected one of"),
    ("data.mask.center_fraction", "0", "data.mask.center_fraction"),
    ("data.mask.center_fraction", "1.5", "data.mask.center_fraction"),
    ("data.mask.center_lines", "-2", "data.mask.center_lines"),
    ("data.mask.center_lines", "30", "data.mask: 30 central lines exceed the budget"),
    ("data.split_fractions", "[0.5, 0.5]", "data.split_fractions: expected a list of 3 items"),
    ("data.split_fractions", "[2, 0, 0]", "data.split_fractions"),
    ("data.noise_std", "-0.1", "data.noise_std"), ("data.min_foreground", "2", "data.min_foreground"),
    ("data.slab", "0", "data.slab"), ("data.mode", "imaginary", "data.mode: expected one of"),
    ("data.dataset", "imagenet", "data.dataset"), ("data.coil_maps", "walsh", "data.coil_maps: expected one of"),
    ("data.measured.test", "[12]", "data.measured.test"), ("data.measured.val", "3", "data.measured.val"),
    ("data.max_train_slices", "0", "data.max_train_slices"),
    ("data.max_eval_slices", "-1", "data.max_eval_slices"), ("data.sources", "[]", "data.sources"),
    ("data.sources", "[../x]", "data.sources"), ("data.fastmri.volume_fraction", "0", "data.fastmri.volume_fraction"),
    ("data.fastmri.challenge", "tricoil", "data.fastmri.challenge"),
    ("data.superres.scale", "1", "data.superres.scale"),
    ("model.kwargs", "[1, 2]", "model.kwargs: expected a mapping"),
    ("model.kwargs", "cascades", "model.kwargs: expected a mapping"),
    ("model.kwargs.cascades", "-1", "model.kwargs.cascades: expected an integer in [1, 10000]"),
    ("model.kwargs.cascades", "0", "model.kwargs.cascades"),
    ("model.kwargs.cascades", "five", "model.kwargs.cascades: expected an integer"),
    ("model.kwargs.cascades", "[1, 2]", "model.kwargs.cascades"),
    ("model.kwargs.cascades", "true", "model.kwargs.cascades"),
    ("model.kwargs.channels", "0", "model.kwargs.channels"),
    ("model.kwargs.channels", "2.5", "model.kwargs.channels"),
    ("model.kwargs.convs", "-3", "model.kwargs.convs"),
    ("model.kwargs.dc_lambda", ".nan", "model.kwargs.dc_lambda"),
    ("model.kwargs.residual", "3", "model.kwargs.residual"),
    ("model.kwargs.depth", "3", "model 'dccnn' has no argument 'depth'"),
    ("model.name", "resnet", "unknown model 'resnet'"), ("model.name", '""', "model.name"),
    ("val_metric", '""', "val_metric"), ("device", '""', "device"),
    ("progress", "maybe", "progress: expected true or false"),
    ("selfsup.teachers", "0", "selfsup.teachers"), ("selfsup.rho", "1", "selfsup.rho"),
    ("selfsup.factors", "[1.0]", "selfsup.factors"), ("selfsup.acs_block", "[4]", "selfsup.acs_block"),
    ("selfsup.checkpoint", "middle", "selfsup.checkpoint"), ("selfsup.method", "magic", "selfsup.method"),
    ("sft.teacher_weight", "-1", "sft.teacher_weight"),
    ("sft.student.kwargs.cascades", "-2", "sft.student.kwargs.cascades"),
    # every count has an upper bound (issue 27: 10**40 epochs ran for ever)
    ("optim.epochs", "10000000000000000000000000000000000000000", "optim.epochs: expected an integer in [1, 100000]"),
    ("optim.max_steps", "1e12", "optim.max_steps"), ("optim.batch_size", "1000000", "optim.batch_size"),
    ("optim.checkpoint_every", "1e40", "optim.checkpoint_every"), ("optim.patience", "1e9", "optim.patience"),
    ("data.coils", "1000", "data.coils: expected an integer in [1, 128]"), ("data.slab", "1e40", "data.slab"),
    ("data.image_size", "100000", "data.image_size"), ("data.num_workers", "100000", "data.num_workers"),
    ("data.mask.center_lines", "1e30", "data.mask.center_lines"), ("selfsup.teachers", "1000", "selfsup.teachers"),
    ("model.kwargs.channels", "1000000", "model.kwargs.channels: expected an integer in [1, 10000]"),
    # a model's own checks and model/data combinations, before the folder is claimed (issue 27)
    ("model.kwargs.convs", "1", "model.kwargs: dccnn refuses these arguments (a cascade needs at least 2 convs"),
    ("model.kwargs.activation", "sigmoid", "model.kwargs: unknown activation 'sigmoid'"),
    ("model.kwargs.in_channels", "3", "model.kwargs: dccnn refuses these arguments (in_channels must be 1"),
    ("model.kwargs.in_channels", "2", "model.kwargs: dccnn takes complex images (2 channels each), but data.mode is real"),
    ("data.coils", "4", "data.coils > 1 needs data.mode: complex"),
    ("init", "{e.other_ckpt}", "init: "), ("init", "{e.root}/missing.pt", "checkpoint not found"),
    ("imgsize", "3", "unknown key 'imgsize'"), ("data.imgsize", "3", "data: unknown key 'imgsize'"),
    ("optim.learning_rate", "1e-3", "optim: unknown key 'learning_rate'"),
]

# "billion laughs": 9**9 strings behind one alias (issue 27: MemoryError after 70 s)
BOMB = "".join([f"l{i}: &l{i} [{', '.join(['lol' if i == 0 else f'*l{i - 1}'] * 9)}]\n" for i in range(9)]
               + ["name: *l8\n"])
FLOW_BOMB = "[" + ", ".join(f"&l{i} [{', '.join(['lol' if i == 0 else f'*l{i - 1}'] * 9)}]" for i in range(9)) + "]"

DISTILL_VALUES = [
    ("distill.teacher", "{e.root}/missing.pt", "checkpoint not found"),
    ("distill.teacher", '""', "distill.teacher: no teacher checkpoint given"),
    ("distill.init", "{e.other_ckpt}", "distill.init:"),
    ("distill.init", "{e.root}/missing.pt", "checkpoint not found"),
    ("distill.init_from_teacher", "everything", "distill.init_from_teacher"),
    ("distill.stages", "[]", "at least one stage"),
    ("distill.stages", "[{{epochs: 0}}]", "distill.stages[0].epochs: expected an integer in [1, 100000]"),
    ("distill.stages", "[{{epochs: true}}]", "distill.stages[0].epochs"),
    ("distill.stages", "[{{lr: -1}}]", "distill.stages[0].lr"),
    ("distill.stages", "[{{max_steps: -1}}]", "distill.stages[0].max_steps"),
    ("distill.stages", "[{{task_weight: -1}}]", "distill.stages[0].task_weight"),
    ("distill.stages", "[{{kd: [{{name: telepathy}}]}}]", "distill.stages[0].kd[0]: unknown KD method"),
    ("distill.stages", "[{{kd: [{{weight: -1}}]}}]", "distill.stages[0].kd[0].weight"),
    ("distill.stages", "[{{kd: [{{name: attention, kwargs: {{temperature: 2}}}}]}}]", "distill.stages[0].kd[0]"),
    ("distill.stages", "[{{teacher_correction: {{schedule: sometimes}}}}]", "teacher_correction.schedule"),
    ("distill.stages", "[{{teacher_correction: {{teacher_every: 0}}}}]", "teacher_correction.teacher_every"),
    ("distill.stages", "7", "distill.stages: expected a list"),
    ("distill.adaptive", "{{momentum: 1.5}}", "distill.adaptive.momentum"),
    ("distill.adaptive", "{{clip: [1]}}", "distill.adaptive.clip"),
    ("distill", "[]", "distill: expected a mapping"),
    ("optim.lr", ".nan", "optim.lr"), ("model.kwargs.cascades", "-5", "model.kwargs.cascades"),
]

CASES: list[Case] = (
    [Case(f"train-{k}={v}", train_argv(f"{k}={v}"), msg) for k, v, msg in TRAIN_VALUES]
    + [Case(f"distill-{k}={v}", distill_argv(f"{k}={v}"), msg) for k, v, msg in DISTILL_VALUES]
    + [
        Case("train-coils-the-model-cannot-take", train_argv("data.coils=4", "data.mode=complex",
                                                             "model.kwargs.in_channels=2"),
             "model.kwargs: dccnn cannot take the data's 4 coil(s) in complex mode"),
        Case("train-fixed-all-zero-mask", train_argv("data.mask.kind=fixed", "data.mask.path={e.zeros}"),
             "zeros.npy' samples nothing"),
        Case("train-missing-config", cmd_argv("train", "--config", "{e.root}/nope.yaml"), "nope.yaml"),
        Case("train-config-is-a-list", lambda e: (e.root / "l.yaml").write_text("- 1\n") and
             ["train", "--config", e.root / "l.yaml"], "l.yaml"),
        Case("train-config-bad-yaml", lambda e: (e.root / "b.yaml").write_text("a: [1\n") and
             ["train", "--config", e.root / "b.yaml"], "b.yaml: not valid YAML (while parsing a flow sequence: "
             "expected ',' or ']', but got '<stream end>' at line 2, column 1)"),
        Case("train-config-not-utf8", lambda e: (e.root / "u.yaml").write_bytes(b"\xff\xfe") and
             ["train", "--config", e.root / "u.yaml"], "u.yaml: the config file is not UTF-8 text (byte 0xff"),
        Case("train-config-is-a-folder", cmd_argv("train", "--config", "{e.scans}"), "scans: is a folder, not a config"),
        Case("train-config-python-tag", lambda e: (e.root / "t.yaml").write_text("seed: !!python/object/apply:os.getpid []\n")
             and ["train", "--config", e.root / "t.yaml"], "t.yaml: not valid YAML (could not determine a constructor"),
        Case("train-config-alias-bomb", lambda e: (e.root / "bomb.yaml").write_text(BOMB) and
             ["train", "--config", e.root / "bomb.yaml"], "bomb.yaml: the YAML expands to more than 100,000 values"),
        Case("train-set-alias-bomb", train_argv("data.sources=" + FLOW_BOMB),
             "--set data.sources: the YAML expands to more than"),
        Case("train-set-bad-yaml-value", train_argv("optim.lr=[1"), "--set optim.lr: not a valid YAML value"),
        Case("study-set-bad-yaml-value", cmd_argv("study", "--set", "seeds=[1"), "--set seeds: not a valid YAML value"),
        Case("train-config-bad-value-in-file", lambda e: (e.root / "v.yaml").write_text("optim: {lr: -1e-4}\n")
             and ["train", "--config", e.root / "v.yaml", "--set", f"out_dir={e.runs}"], "optim.lr"),
        Case("train-unknown-preset", cmd_argv("train", "--config", CONFIGS / "kdmri_teacher.yaml", "--preset", "huge"),
             "no preset 'huge'"),
        Case("train-set-without-equals", train_argv("optim.lr"), "--set expects key=value"),
        Case("train-set-into-a-value", train_argv("optim.lr.x=1"), "optim.lr"),
        Case("train-existing-run-without-overwrite", train_argv(overwrite=False), "already holds results"),
        Case("train-out-dir-is-a-file", train_argv("out_dir={e.runs}/sentinel.txt", "name=x"), "sentinel.txt"),
        Case("train-overwrite-a-foreign-folder", lambda e: (e.runs / "mine").mkdir() or
             (e.runs / "mine" / "notes.txt").write_text("x") and train_argv("name=mine")(e), "did not create"),
        Case("train-overwrite-the-cwd", train_argv("out_dir={e.root}/..", "name={e.root.name}"),
             "refusing to replace"),
        Case("train-overwrite-a-folder-holding-the-data", train_argv(
            "data.dataset=prepared", "data.path={e.runs}/prev/data", "name=prev"), "(or contains) the input"),
        Case("train-overwrite-a-marked-folder-holding-a-foreign-file", lambda e: (e.runs / "mine").mkdir() or
             (e.runs / "mine" / ".mrdistill").write_text("") or (e.runs / "mine" / "thesis.tex").write_text("x")
             and train_argv("name=mine")(e), "mine holds files mrdistill did not write: thesis.tex"),
        Case("train-no-such-argument", cmd_argv("train", "--config", CONFIGS / "kdmri_teacher.yaml", "--epochs", "3"),
             "unrecognized arguments: --epochs"),
        Case("train-no-config", cmd_argv("train"), "--config"),
        Case("distill-teacher-is-garbage", distill_argv("distill.teacher={e.garbage}"), "garbage.pt: not a PyTorch checkpoint (the file starts with text"),
        Case("distill-overwrite-folder-holding-the-teacher", lambda e: distill_argv(
            f"distill.teacher={e.runs / 'prev' / 't.pt'}")(e) if (e.runs / "prev" / "t.pt").write_bytes(
                e.ckpt.read_bytes()) else [], "(or contains) the input"),
        # demo
        Case("demo-acceleration-1", cmd_argv("demo", "--preset", "smoke", "--acceleration", "1", "--out", "{e.runs}/d"),
             "acceleration"),
        Case("demo-acceleration-negative", cmd_argv("demo", "--preset", "smoke", "--acceleration", "-4",
                                                "--out", "{e.runs}/d"), "acceleration"),
        Case("demo-acceleration-huge", cmd_argv("demo", "--preset", "smoke", "--acceleration", "1e6",
                                            "--out", "{e.runs}/d"), "--acceleration: acceleration 1e+06"),
        Case("demo-acceleration-nan", cmd_argv("demo", "--preset", "smoke", "--acceleration", "nan",
                                           "--out", "{e.runs}/d"), "acceleration"),
        Case("demo-acceleration-word", cmd_argv("demo", "--acceleration", "four"), "--acceleration"),
        Case("demo-seed-negative", cmd_argv("demo", "--preset", "smoke", "--seed", "-1", "--out", "{e.runs}/d"),
             "--seed: expected an integer in [0, 2**63 - 1]"),
        Case("demo-seed-huge", cmd_argv("demo", "--preset", "smoke", "--seed", str(2**70), "--out", "{e.runs}/d"),
             "--seed"),
        Case("demo-unknown-preset", cmd_argv("demo", "--preset", "gigantic"), "unknown preset 'gigantic'"),
        Case("demo-out-is-a-file", cmd_argv("demo", "--preset", "smoke", "--out", "{e.runs}/sentinel.txt"),
             "sentinel.txt: exists and is a file"),
        Case("demo-out-cwd-overwrite", cmd_argv("demo", "--preset", "smoke", "--out", ".", "--overwrite"),
             "refusing to replace"),
        Case("demo-out-parent-overwrite", cmd_argv("demo", "--preset", "smoke", "--out", "..", "--overwrite"),
             "refusing to replace"),
        Case("demo-out-root-overwrite", cmd_argv("demo", "--preset", "smoke", "--out", "/", "--overwrite"),
             "refusing to replace"),
        Case("demo-out-non-empty", cmd_argv("demo", "--preset", "smoke", "--out", "{e.runs}"), "already holds results"),
        Case("demo-out-foreign-overwrite", cmd_argv("demo", "--preset", "smoke", "--out", "{e.runs}", "--overwrite"),
             "did not create"),
        Case("demo-out-marked-cwd-overwrite", lambda e: (e.root / ".mrdistill").write_text("{}") and
             ["demo", "--preset", "smoke", "--out", ".", "--overwrite"], "refusing to replace"),
        # prepare
        Case("prepare-out-is-the-input-folder", cmd_argv("prepare", "{e.scans}", "--out", "{e.scans}", "--overwrite"),
             "(or contains) the input"),
        Case("prepare-out-contains-the-input", cmd_argv("prepare", "{e.nifti}", "--out", "{e.root}", "--overwrite"),
             "(or contains) the input"),
        Case("prepare-out-is-a-file", cmd_argv("prepare", "{e.nifti}", "--out", "{e.root}/sentinel.txt"),
             "sentinel.txt: exists and is a file"),
        Case("prepare-out-cwd-overwrite", cmd_argv("prepare", "{e.nifti}", "--out", ".", "--overwrite"),
             "(or contains) the input"),
        Case("prepare-out-non-empty", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}"), "already holds results"),
        Case("prepare-measured-out-is-a-file", cmd_argv("prepare", "--from", "measured", "--out",
                                                        "{e.root}/sentinel.txt"), "sentinel.txt: exists and is not a folder"),
        Case("prepare-measured-out-foreign", cmd_argv("prepare", "--from", "measured", "--out", "{e.runs}"),
             "does not hold measured data"),
        Case("prepare-measured-and-inputs", cmd_argv("prepare", "{e.nifti}", "--from", "measured"),
             "either input files or --from measured"),
        # a fresh output folder: the hint must come from the data check, not from the folder's
        Case("train-measured-not-prepared", train_argv("data.dataset=measured", "data.mode=complex",
                                                       "data.path={e.root}/no_measured", "name=fresh"),
             "prepare --from measured"),
        Case("prepare-coils-0", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--coils", "0"),
             "--coils: expected an integer in [1, 128]"),
        Case("prepare-slab-0", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--slab", "0"), "--slab"),
        Case("prepare-size-0", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--size", "0"), "--size"),
        Case("prepare-noise-negative", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--noise-std", "-1"),
             "--noise-std"),
        Case("prepare-noise-nan", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--noise-std", "nan"),
             "--noise-std"),
        Case("prepare-fractions", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--split-fractions",
                                       "0.5", "0.5", "2"), "--split-fractions"),
        Case("prepare-foreground", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--min-foreground", "2"),
             "--min-foreground"),
        Case("prepare-slice-axis", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--slice-axis", "5"),
             "--slice-axis"),
        Case("prepare-seed", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--seed", "-1"), "--seed"),
        Case("prepare-mode", cmd_argv("prepare", "{e.nifti}", "--out", "{e.runs}/p", "--mode", "x"), "--mode"),
        Case("prepare-missing-input", cmd_argv("prepare", "{e.root}/nope.nii.gz", "--out", "{e.runs}/p"), "nope.nii.gz"),
        Case("prepare-fastmri-input", lambda e: ["prepare", e.fastmri, "--out", e.runs / "p"], "knee.h5"),
        Case("prepare-text-input", lambda e: (e.root / "notes.txt").write_text("x") and
             ["prepare", e.root / "notes.txt", "--out", e.runs / "p"], "notes.txt"),
        # predict
        Case("predict-out-is-the-input-folder", cmd_argv("predict", "{e.scans}", "--checkpoint", "{e.ckpt}",
                                                     "--out", "{e.scans}", "--overwrite"), "(or contains) the input"),
        Case("predict-out-contains-the-input", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}",
                                                    "--out", "{e.root}", "--overwrite"), "(or contains) the input"),
        Case("predict-out-is-a-file", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}",
                                           "--out", "{e.root}/sentinel.txt"), "sentinel.txt: exists and is a file"),
        Case("predict-out-non-empty", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}", "--out", "{e.runs}"),
             "already holds results"),
        Case("predict-out-foreign-overwrite", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}",
                                                   "--out", "{e.runs}", "--overwrite"), "did not create"),
        Case("predict-batch-size-0", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}", "--out", "{e.runs}/o",
                                          "--batch-size", "0"), "--batch-size: expected an integer in [1, 65536]"),
        Case("predict-batch-size-negative", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}",
                                                 "--out", "{e.runs}/o", "--batch-size", "-2"), "--batch-size"),
        Case("predict-acceleration-1", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}", "--out", "{e.runs}/o",
                                            "--acceleration", "1"), "--acceleration"),
        Case("predict-acceleration-nan", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}",
                                              "--out", "{e.runs}/o", "--acceleration", "nan"), "--acceleration"),
        Case("predict-center-fraction", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}",
                                             "--out", "{e.runs}/o", "--center-fraction", "2"), "--center-fraction"),
        Case("predict-slice-axis", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}", "--out", "{e.runs}/o",
                                        "--slice-axis", "7"), "--slice-axis"),
        Case("predict-mask-kind", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}", "--out", "{e.runs}/o",
                                       "--mask", "spiral"), "--mask"),
        Case("predict-missing-checkpoint", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.root}/no.pt",
                                                "--out", "{e.runs}/o"), "no.pt"),
        Case("predict-garbage-checkpoint", cmd_argv("predict", "{e.nifti}", "--checkpoint", "{e.garbage}",
                                                "--out", "{e.runs}/o"), "garbage.pt: not a PyTorch checkpoint (the file starts with text"),
        Case("predict-missing-input", cmd_argv("predict", "{e.root}/none.nii", "--checkpoint", "{e.ckpt}",
                                           "--out", "{e.runs}/o"), "none.nii"),
        Case("predict-no-checkpoint-option", cmd_argv("predict", "{e.nifti}", "--out", "{e.runs}/o"), "--checkpoint"),
        # evaluate
        Case("evaluate-no-mode", cmd_argv("evaluate"), "evaluate needs --run"),
        Case("evaluate-both-modes", cmd_argv("evaluate", "--run", "{e.run}", "--target-path", "{e.scans}"), "not both"),
        Case("evaluate-only-targets", cmd_argv("evaluate", "--target-path", "{e.scans}"), "--predictions-path"),
        Case("evaluate-run-missing", cmd_argv("evaluate", "--run", "{e.root}/nowhere"), "nowhere"),
        Case("evaluate-not-a-run", cmd_argv("evaluate", "--run", "{e.scans}"), "not a run directory"),
        Case("evaluate-missing-checkpoint", cmd_argv("evaluate", "--run", "{e.run}", "--checkpoint", "x.pt"), "x.pt"),
        Case("evaluate-out-is-a-file", cmd_argv("evaluate", "--run", "{e.run}", "--out", "{e.root}/sentinel.txt"),
             "sentinel.txt: exists and is a file"),
        Case("evaluate-out-is-the-run", cmd_argv("evaluate", "--run", "{e.run}", "--out", "{e.run}"),
             "(or contains) the input"),
        Case("evaluate-out-foreign", cmd_argv("evaluate", "--run", "{e.run}", "--out", "{e.runs}"), "did not create"),
        Case("evaluate-run-with-bad-config", lambda e: (e.run / "config.yaml").write_text("optim: {lr: -1}\n") and
             ["evaluate", "--run", e.run], "optim.lr"),
        Case("evaluate-file-mode-out-is-a-file", cmd_argv("evaluate", "--target-path", "{e.scans}", "--predictions-path",
                                                      "{e.scans}", "--out", "{e.root}/sentinel.txt"), "sentinel.txt"),
        Case("evaluate-file-mode-out-is-input", cmd_argv("evaluate", "--target-path", "{e.scans}", "--predictions-path",
                                                     "{e.runs}", "--out", "{e.scans}"), "(or contains) the input"),
        Case("evaluate-bad-challenge", cmd_argv("evaluate", "--target-path", "{e.scans}", "--predictions-path",
                                            "{e.runs}", "--challenge", "tricoil"), "--challenge"),
        Case("evaluate-target-not-hdf5", files_argv("t/knee.h5", b"junk"), "t/knee.h5: not an HDF5 file"),
        Case("evaluate-target-without-targets", files_argv("t/knee.h5", {"other": 1}), "cannot tell the challenge"),
        Case("evaluate-prediction-not-hdf5", files_argv("p/knee.h5", b"junk"), "p/knee.h5: not an HDF5 file"),
        Case("evaluate-prediction-without-reconstruction", files_argv("p/knee.h5", {"other": 1}),
             "p/knee.h5: no 'reconstruction' dataset"),
        # study
        Case("study-unknown-key", cmd_argv("study", "--set", "colour=red"), "study: unknown key 'colour'"),
        Case("study-no-seeds", cmd_argv("study", "--set", "seeds=[]"), "study.seeds"),
        Case("study-seed-huge", cmd_argv("study", "--set", "seed=1180591620717411303424"), "study.seed"),
        Case("study-acceleration-1", cmd_argv("study", "--set", "accelerations=[1]"), "study.accelerations"),
        Case("study-teacher-epochs-0", cmd_argv("study", "--set", "teacher_epochs=0"), "study.teacher_epochs"),
        Case("study-feature-epochs", cmd_argv("study", "--set", "feature_epochs=-1"), "study.feature_epochs"),
        Case("study-name-absolute", cmd_argv("study", "--set", "name=/etc"), "study.name"),
        Case("study-lr", cmd_argv("study", "--set", "optim.lr=-1"), "study.optim.lr"),
        Case("study-missing-config", cmd_argv("study", "--config", "{e.root}/nope.yaml"), "nope.yaml"),
        Case("study-unknown-preset", cmd_argv("study", "--preset", "enormous"),
             "unknown study preset 'enormous'; valid: cpu, cpu_residual, smoke"),
        # export, benchmark
        Case("export-missing-checkpoint", cmd_argv("export", "{e.root}/no.pt", "--format", "onnx", "--out",
                                               "{e.runs}/m.onnx"), "no.pt"),
        Case("export-garbage-checkpoint", cmd_argv("export", "{e.garbage}", "--format", "onnx",
                                               "--out", "{e.runs}/m.onnx"), "garbage.pt: not a PyTorch checkpoint (the file starts with text"),
        Case("export-out-is-the-checkpoint", cmd_argv("export", "{e.ckpt}", "--format", "torchscript", "--out",
                                                  "{e.ckpt}", "--overwrite"), "an input is never overwritten"),
        Case("export-overwrite-a-foreign-file", cmd_argv("export", "{e.ckpt}", "--format", "torchscript", "--out",
                                                     "{e.runs}/sentinel.txt", "--overwrite"),
             "sentinel.txt was not written by mrdistill export"),
        Case("predict-5d-nifti", lambda e: write_nifti_5d(e.root / "vec.nii") and
             ["predict", e.root / "vec.nii", "--checkpoint", e.ckpt, "--out", e.runs / "o", "--no-progress"],
             "vec.nii: a 5-D NIfTI of shape (8, 6, 3, 1, 2) holds more than one value"),
        Case("predict-text-checkpoint", lambda e: (e.root / "log.pt").write_text("epoch,loss\n") and
             ["predict", e.nifti, "--checkpoint", e.root / "log.pt", "--out", e.runs / "o"],
             "log.pt: not a PyTorch checkpoint (the file starts with text 'epoch,loss')"),
        Case("predict-truncated-checkpoint", lambda e: (e.root / "cut.pt").write_bytes(e.ckpt.read_bytes()[:3000])
             and ["predict", e.nifti, "--checkpoint", e.root / "cut.pt", "--out", e.runs / "o"],
             "cut.pt: the file is truncated or damaged"),
        Case("evaluate-checkpoint-with-code", lambda e: write_pickle_with_code(e.run / "checkpoints" / "evil.pt")
             and ["evaluate", "--run", e.run, "--checkpoint", "evil.pt"],
             "evil.pt: refused to unpickle it (unsupported GLOBAL posix.system)"),
        Case("export-unknown-format", cmd_argv("export", "{e.ckpt}", "--format", "tflite", "--out", "{e.runs}/m"),
             "invalid choice: 'tflite'"),
        Case("export-out-is-the-sentinel", cmd_argv("export", "{e.ckpt}", "--format", "onnx", "--out",
                                                "{e.runs}/sentinel.txt"), "sentinel.txt"),
        Case("export-out-is-a-folder", cmd_argv("export", "{e.ckpt}", "--format", "onnx", "--out", "{e.runs}"),
             "{e.runs}"),
        Case("export-shape-0", cmd_argv("export", "{e.ckpt}", "--format", "onnx", "--out", "{e.runs}/m.onnx",
                                    "--shape", "0", "0"), "--shape"),
        Case("export-tolerance-nan", cmd_argv("export", "{e.ckpt}", "--format", "onnx", "--out", "{e.runs}/m.onnx",
                                          "--tolerance", "nan"), "--tolerance"),
        Case("benchmark-batch-0", cmd_argv("benchmark", "--checkpoint", "{e.ckpt}", "--batch", "0", "--out",
                                       "{e.runs}/b"), "--batch"),
        Case("benchmark-repeats-0", cmd_argv("benchmark", "--checkpoint", "{e.ckpt}", "--repeats", "0", "--out",
                                         "{e.runs}/b"), "--repeats"),
        Case("benchmark-out-is-a-file", cmd_argv("benchmark", "--checkpoint", "{e.ckpt}", "--out",
                                             "{e.runs}/sentinel.txt"), "sentinel.txt: exists and is a file"),
        Case("benchmark-missing-checkpoint", cmd_argv("benchmark", "--checkpoint", "{e.root}/no.pt", "--out",
                                                  "{e.runs}/b"), "no.pt"),
        Case("benchmark-unknown-backend", cmd_argv("benchmark", "--checkpoint", "{e.ckpt}", "--backends", "warp",
                                               "--out", "{e.runs}/b"), "unknown backend 'warp'"),
        # an output folder below a regular file: not writable, even for root
        *[Case(f"{cmd[0]}-out-below-a-file", cmd_argv(*cmd, "--out", "{e.runs}/sentinel.txt/out"),
               "sentinel.txt/out: cannot write the output folder (Not a directory)") for cmd in [
            ("demo", "--preset", "smoke"), ("prepare", "{e.nifti}"),
            ("predict", "{e.nifti}", "--checkpoint", "{e.ckpt}"), ("evaluate", "--run", "{e.run}")]],
        Case("benchmark-out-below-a-file", cmd_argv("benchmark", "--checkpoint", "{e.ckpt}", "--out",
                                                "{e.runs}/sentinel.txt/b"), "sentinel.txt is a file, not a folder"),
        Case("export-out-below-a-file", cmd_argv("export", "{e.ckpt}", "--format", "onnx", "--shape", "32", "32",
                                             "--out", "{e.runs}/sentinel.txt/m.onnx"), "sentinel.txt is a file"),
        # list
        Case("list-extra-argument", cmd_argv("list", "everything"), "unrecognized arguments: everything"),
        Case("unknown-command", cmd_argv("train-all"), "invalid choice: 'train-all'"),
    ]
)


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 150 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_exit_2_and_loses_nothing(case, env, capsys):
    argv = [str(a) for a in case.argv(env)]
    before = sorted(p.relative_to(env.root) for p in env.runs.rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("mrdistill: error: "), err
    assert "Traceback" not in err and not lines[0].startswith("mrdistill: error: mrdistill")
    assert case.expect.format(e=env) in lines[0], lines[0]
    assert (env.root / "sentinel.txt").read_text() == "the user's file"
    assert (env.runs / "sentinel.txt").read_text() == "the user's file"
    assert (env.runs / "prev" / "best.pt").read_text() == "previous results"
    assert env.nifti.is_file() and (env.run / "checkpoints" / "best.pt").is_file()
    after = sorted(p.relative_to(env.root) for p in env.runs.rglob("*"))
    assert set(before) <= set(after)  # nothing the user had is gone
    assert not [p for p in env.runs.iterdir() if ".replaced-" in p.name]  # nothing left aside
