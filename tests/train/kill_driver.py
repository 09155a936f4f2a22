"""Run `mrdistill ARGS` and SIGKILL the process at a chosen point (for the resume tests).

Usage: python kill_driver.py step:K ARGS...   killed right after the K-th training step
       python kill_driver.py save:K ARGS...   killed inside the K-th torch.save (half a temp file)
The kill is real (SIGKILL, no cleanup), so the run folder is what a preempted job leaves behind.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from mrdistill.cli.main import main
from mrdistill.train import loop


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(spec: str) -> None:
    kind, k = spec.split(":")
    target, count = int(k), [0]
    if kind == "step":
        real_step = loop._Stage.step

        def step(self, batch):  # type: ignore[no-untyped-def]
            real_step(self, batch)
            count[0] += 1
            if count[0] == target:
                _kill()

        loop._Stage.step = step
    elif kind == "save":
        real_save = torch.save

        def save(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
            count[0] += 1
            if count[0] == target:
                real_save(obj, f, *args, **kwargs)
                with open(f, "r+b") as fh:  # a write cut off half-way
                    fh.truncate(os.path.getsize(f) // 2)
                _kill()
            real_save(obj, f, *args, **kwargs)

        torch.save = save
    else:
        raise SystemExit(f"unknown kill point {spec}")


if __name__ == "__main__":
    install(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
