"""`allocator.retain_freed_memory`: freed tensor memory is reused instead of page-faulted in afresh;
a user's own malloc settings and non-glibc systems are left alone; the `mrdistill` program sets it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import mrdistill.accel.allocator as allocator

# Seven training steps of a one-cascade DC-CNN at batch 4, 320^2, 32 channels (each activation 50 MiB,
# over the 32 MiB above which glibc's malloc always gives blocks back); prints the minor
# page faults of the last three steps and a hash of the trained weights. In a child process: the
# setting is process-wide.
_STEPS = """
import hashlib, resource, sys, torch
import torch.nn.functional as F
from mrdistill.accel.allocator import retain_freed_memory
from mrdistill.models import build_model
torch.set_num_threads(1)
print(retain_freed_memory() if sys.argv[1] == "retain" else "default")
model = build_model("dccnn", cascades=1, convs=3, channels=32, in_channels=1, seed=0)
gen = torch.Generator().manual_seed(0)
image = torch.rand(4, 1, 320, 320, generator=gen)
mask = (torch.rand(4, 1, 1, 320, generator=gen) < 0.3).float()
kspace = torch.fft.fft2(image.to(torch.complex64), norm="ortho") * mask
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
faults = []
for _ in range(7):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    opt.zero_grad()
    F.l1_loss(model(kspace, mask).image, image).backward()
    opt.step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[4:]))
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest())
"""
ACTIVATION_PAGES = 4 * 32 * 320 * 320 * 4 // 4096

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def _train(mode: str) -> tuple[str, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", _STEPS, mode], capture_output=True, text=True,
                         check=True, timeout=120, env=env).stdout.split()
    return out[0], int(out[1]), out[2]


@glibc_only
def test_training_steps_stop_page_faulting_with_the_same_weights() -> None:
    """Measured: 243k faults per step by default; when retained none from the fourth step on, at
    most one late heap growth (one activation's pages); the trained weights are bit-identical (only
    where the bytes live changes)."""
    _, default, weights = _train("default")
    assert default > 3 * ACTIVATION_PAGES  # glibc's default: every step faults its activations in
    state, retained, weights_retained = _train("retain")
    assert state == "True"
    assert retained <= ACTIVATION_PAGES + ACTIVATION_PAGES // 10 and retained < default // 20
    assert weights_retained == weights


def test_a_users_own_malloc_settings_win(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert allocator.retain_freed_memory() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert allocator.retain_freed_memory() is False


def test_nothing_changes_off_glibc(monkeypatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert allocator.retain_freed_memory() is False
