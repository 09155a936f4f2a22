"""How long the `mrdistill` program takes to answer when it does no work: `--help`, a command's
`--help`, `list` and an argument error, against `python -c "import torch"` on the same machine.

    python benchmarks/cli_startup.py [--repeats 15]

Each round runs every case once as a fresh process, in an order rotated round by round (so a busy
spell of a shared machine hits every case alike); a case's figure is the median over rounds of the
wall time from spawn to exit. Writes benchmarks/results/cli_startup.md and .json (every round, the
machine, the command). Nothing is asserted: tests/cli/test_main.py checks that these answers import
no torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrdistill.atomic import atomic_write_text  # noqa: E402
from mrdistill.machine import cpu_model  # noqa: E402

PROGRAM = [sys.executable, "-m", "mrdistill.cli.main"]
CASES = {
    "mrdistill --help": [*PROGRAM, "--help"],
    "mrdistill predict --help": [*PROGRAM, "predict", "--help"],
    "mrdistill list": [*PROGRAM, "list"],
    "mrdistill predict --bogus (argument error)": [*PROGRAM, "predict", "--bogus"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    'python -c "pass" (the interpreter alone)': [sys.executable, "-c", "pass"],
}


def run_once(command: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - start, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="rounds (default %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cli_startup"),
                        help="results path without suffix")
    args = parser.parse_args()
    names = list(CASES)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    codes: dict[str, int] = {}
    for n in names:  # one unrecorded warm-up round: the page cache holds every file afterwards
        run_once(CASES[n])
    for r in range(args.repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t, codes[n] = run_once(CASES[n])
            seconds[n].append(t)
    torch_median = statistics.median(seconds['python -c "import torch"'])
    rows = []
    for n in names:
        med = statistics.median(seconds[n])
        rows.append(f"| {n} | {codes[n]} | {1000 * med:.0f} | {1000 * min(seconds[n]):.0f} | "
                    f"{1000 * max(seconds[n]):.0f} | {med / torch_median:.2f} |")
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "load_average": os.getloadavg()}
    command = " ".join(["python", "benchmarks/cli_startup.py", *sys.argv[1:]])
    md = [f"# CLI start-up ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
          f"- command: `{command}` ({args.repeats} interleaved rounds after one warm-up round)",
          f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['platform']}, "
          f"Python {machine['python']}; load average at the end {machine['load_average']}",
          "", "| case | exit | median ms | min ms | max ms | median / import torch |", "|---|---|---|---|---|---|",
          *rows, ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"command": command, "machine": machine, "exit_codes": codes, "seconds": seconds}, indent=1) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
