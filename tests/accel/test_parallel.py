"""`parallel.thread_parts`: contiguous slices covering the range once, one per thread at most."""

import pytest
import torch

from mrdistill.accel.parallel import thread_parts


@pytest.mark.parametrize(("total", "most", "threads", "count"), [
    (10, None, 2, 2), (1, None, 4, 1), (7, 2, 4, 2), (5, 0, 2, 1), (960, None, 3, 3)])
def test_thread_parts_cover_the_range_once(total, most, threads, count) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        parts = thread_parts(total, most)
    finally:
        torch.set_num_threads(before)
    assert len(parts) == count
    assert [i for p in parts for i in range(total)[p]] == list(range(total))
    assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
