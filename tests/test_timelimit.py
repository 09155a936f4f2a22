"""Calls under a time limit in a forked worker: results in order, a stuck call costs only its item."""

from __future__ import annotations

import os
import time

from mrdistill.errors import MrdistillError
from mrdistill.timelimit import TimeLimitExceeded, iter_time_limited


def work(item: int) -> int:
    if item == 2:
        time.sleep(60)  # stuck (as HDF5 can be inside one C call)
    if item == 3:
        raise MrdistillError(f"item {item}: bad input")
    if item == 4:
        raise KeyError("a reader bug")
    if item == 5:
        os._exit(3)  # the worker dies (a crash in a C library)
    return item * 10


def test_results_in_order_and_each_failure_in_its_place():
    start = time.perf_counter()
    out = list(iter_time_limited(work, [0, 1, 2, 3, 4, 5, 6], 1.0, describe=lambda i: f"item {i}"))
    assert time.perf_counter() - start < 30  # the stuck call was cut off, not waited for
    assert out[:2] == [0, 10] and out[6] == 60
    assert isinstance(out[2], TimeLimitExceeded) and str(out[2]).startswith("item 2: reading it took more than 1 s")
    assert isinstance(out[3], MrdistillError) and str(out[3]) == "item 3: bad input"
    assert isinstance(out[4], MrdistillError) and "a reader bug" in str(out[4])
    assert isinstance(out[5], MrdistillError) and "crashed" in str(out[5])


def test_no_items_start_no_worker():
    assert list(iter_time_limited(work, [], 1.0)) == []
