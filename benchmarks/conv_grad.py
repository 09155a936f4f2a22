"""The parts of one 3x3 conv's training step on this CPU: oneDNN forward, input gradient and weight
gradient in NCHW and channels_last, and mrdistill's compiled weight-gradient kernel
(`accel.native_conv`), in GFLOP/s. With `--narrow`: the two narrow convs at a cascade's ends
(C->1 and 1->C) in channels_last, each part by oneDNN and by the kernel `native_conv` uses for it.

Usage: python benchmarks/conv_grad.py --size 240 --batch 4 --channels 32 --repeats 7 --threads 2
       python benchmarks/conv_grad.py --narrow --size 240 --batch 4 --channels 32 --repeats 7 --threads 2

Every part is timed in the same interleaved rounds (order rotated each round); reported: the median
seconds and GFLOP/s (2 x multiply-adds of one pass / median time). Writes `<out>.json`/`.md`
(default benchmarks/results/conv_grad.*).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in train_step.py

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mrdistill.machine import cpu_model  # noqa: E402
from mrdistill.accel.native import conv3x3_weight_grad_native  # noqa: E402
from mrdistill.accel.native_conv import channels_last_view, kernel_weight_grad, narrow_conv  # noqa: E402
from train_step import command_line, save_report  # noqa: E402

CL = torch.channels_last


def parts(n: int, c: int, size: int) -> dict[str, Callable[[], object]]:
    """The timed calls for a c -> c conv on (n, c, size, size) float32."""
    gen = torch.Generator().manual_seed(0)
    x, dy = torch.randn(n, c, size, size, generator=gen), torch.randn(n, c, size, size, generator=gen)
    w = torch.randn(c, c, 3, 3, generator=gen)
    xc, dyc, wc = x.contiguous(memory_format=CL), dy.contiguous(memory_format=CL), w.contiguous(memory_format=CL)

    def backward(d: torch.Tensor, i: torch.Tensor, k: torch.Tensor, mask: list[bool]) -> object:
        return torch.ops.aten.convolution_backward(d, i, k, [c], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                   mask)

    calls = {
        "forward NCHW (oneDNN)": lambda: F.conv2d(x, w, padding=1),
        "forward channels_last (oneDNN)": lambda: F.conv2d(xc, wc, padding=1),
        "input grad NCHW (oneDNN)": lambda: backward(dy, x, w, [True, False, False]),
        "input grad channels_last (oneDNN)": lambda: backward(dyc, xc, wc, [True, False, False]),
        "weight+bias grad NCHW (oneDNN)": lambda: backward(dy, x, w, [False, True, True]),
        "weight+bias grad channels_last (oneDNN)": lambda: backward(dyc, xc, wc, [False, True, True]),
    }
    if conv3x3_weight_grad_native(xc, dyc) is not None:
        calls["weight+bias grad channels_last (mrdistill kernel)"] = lambda: conv3x3_weight_grad_native(xc, dyc)
    return calls


def narrow_parts(n: int, c: int, size: int) -> dict[str, Callable[[], object]]:
    """The timed calls for the c -> 1 conv that ends a cascade and the 1 -> c conv that starts one,
    on (n, c|1, size, size) float32 channels-last (every pass does 2 * n * size^2 * c * 9 FLOP)."""
    gen = torch.Generator().manual_seed(0)
    wide = torch.randn(n, c, size, size, generator=gen).contiguous(memory_format=CL)
    one = channels_last_view(torch.randn(n, 1, size, size, generator=gen))
    w_last = torch.randn(1, c, 3, 3, generator=gen).contiguous(memory_format=CL)
    w_first = torch.randn(c, 1, 3, 3, generator=gen).contiguous(memory_format=CL)
    flipped = w_first.flip(2, 3).transpose(0, 1)  # the first conv's input gradient is this conv

    def backward(d: torch.Tensor, i: torch.Tensor, k: torch.Tensor, mask: list[bool]) -> object:
        return torch.ops.aten.convolution_backward(d, i, k, [k.shape[0]], [1, 1], [1, 1], [1, 1], False,
                                                   [0, 0], 1, mask)

    return {
        f"{c}->1 forward (oneDNN)": lambda: F.conv2d(wide, w_last, padding=1),
        f"{c}->1 forward (tap-conv kernel)": lambda: narrow_conv(wide, w_last, None),
        f"{c}->1 weight+bias grad (oneDNN)": lambda: backward(one, wide, w_last, [False, True, True]),
        f"{c}->1 weight+bias grad (kernel)": lambda: kernel_weight_grad(wide, one),
        f"1->{c} input grad (oneDNN backward-data)": lambda: backward(wide, one, w_first, [True, False, False]),
        f"1->{c} input grad (oneDNN, flipped conv)":
            lambda: F.conv2d(wide, flipped.contiguous(memory_format=CL), padding=1),
        f"1->{c} input grad (tap-conv kernel)": lambda: narrow_conv(wide, flipped, None),
        f"1->{c} weight+bias grad (oneDNN)": lambda: backward(wide, one, w_first, [False, True, True]),
        f"1->{c} weight+bias grad (kernel, swapped)": lambda: kernel_weight_grad(one, wide),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=240)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--narrow", action="store_true", help="the C->1 and 1->C convs instead")
    ap.add_argument("--out", default=None, help="default benchmarks/results/conv_grad[_narrow]")
    args = ap.parse_args(argv)
    out = args.out or "benchmarks/results/conv_grad" + ("_narrow" if args.narrow else "")
    torch.set_num_threads(args.threads)
    make = narrow_parts if args.narrow else parts
    calls = make(args.batch, args.channels, args.size)
    flop = 2 * args.batch * args.size ** 2 * args.channels * (1 if args.narrow else args.channels) * 9
    load_start = [round(v, 1) for v in os.getloadavg()]
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():  # warm-up: primitive creation, first-touch memory
        call()
    names = list(calls)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    results = {name: {"median_s": statistics.median(ts), "gflops": flop / statistics.median(ts) / 1e9}
               for name, ts in times.items()}
    report = {"command": command_line(), **vars(args),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                          "platform": platform.platform(), "loadavg_start": load_start,
                          "loadavg_end": [round(v, 1) for v in os.getloadavg()]},
              "results": results}
    title = (f"The {args.channels}->1 and 1->{args.channels} 3x3 convs" if args.narrow
             else f"One {args.channels}->{args.channels} 3x3 conv")
    lines = [f"# {title}, B{args.batch} at {args.size}^2", "",
             f"Command: `{report['command']}`  ",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch "
             f"{torch.__version__}, threads {args.threads}, load average at start {load_start}", "",
             "| part | median ms | GFLOP/s |", "|---|---|---|"]
    lines += [f"| {name} | {r['median_s'] * 1e3:.1f} | {r['gflops']:.0f} |" for name, r in results.items()]
    save_report(Path(out), report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
