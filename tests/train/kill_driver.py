"""Run `mrdistill ARGS` and SIGKILL the process at a chosen point (for the resume tests).

Usage: python kill_driver.py step:K ARGS...   killed right after the K-th training step
       python kill_driver.py save:K ARGS...   killed inside the K-th torch.save (half a temp file)
       torchrun ... kill_driver.py job:K ARGS...   the whole torchrun job killed after step K
The kill is real (SIGKILL, no cleanup), so the run folder is what a preempted job leaves behind.
With `job`, every rank SIGKILLs the torchrun agent that started it (so nothing is restarted or
cleaned up) and then itself, right after its K-th step: the ranks' DDP steps are in lock-step, so
all of them die at the same step, as when a node is lost.
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
    if kind in ("step", "job"):
        real_step = loop._Stage.step
        agent = os.getppid()  # torchrun's agent with `job` (read now: it changes once it is dead)

        def step(self, batch):  # type: ignore[no-untyped-def]
            real_step(self, batch)
            count[0] += 1
            if count[0] == target:
                if kind == "job":
                    try:
                        os.kill(agent, signal.SIGKILL)
                    except ProcessLookupError:  # another rank was first
                        pass
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
