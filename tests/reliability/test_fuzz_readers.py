"""Every reader over mutated and truncated files: a valid result or `MrdistillError`, in time.

Property-based (hypothesis, derandomised and bounded so it stays a few seconds per reader); the
long run over 10,000 files is benchmarks/fuzz.py. The fastMRI metadata time limit is 1 s here, so
a file that keeps HDF5 busy costs the test one second.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_harness import KINDS, MUTATIONS, mutate, read_as, write_seeds  # noqa: E402

from mrdistill.errors import MrdistillError  # noqa: E402

TIME_LIMIT = 1.0  # the fastMRI metadata limit in these tests, seconds
WHOLE_READ_LIMIT = 15.0  # a whole read, on a loaded 2-core machine (normally well under 1 s)

ops = st.lists(st.tuples(st.sampled_from(MUTATIONS), st.floats(0, 1), st.integers(0, 255)),
               min_size=1, max_size=3)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    return write_seeds(tmp_path_factory.mktemp("seeds"))


@pytest.mark.parametrize("kind", list(KINDS))
@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutations=ops)
def test_a_mutated_file_gives_a_valid_result_or_a_clear_error_in_time(kind, mutations, seeds, tmp_path):
    folder = tmp_path / f"case{abs(hash(tuple(mutations))) % 10**8}"
    folder.mkdir(exist_ok=True)
    path = folder / ("prepare.json" if kind == "manifest" else f"case{KINDS[kind]}")
    path.write_bytes(mutate(seeds[kind], mutations))
    start = time.perf_counter()
    try:
        read_as(kind, path, TIME_LIMIT)
    except MrdistillError as exc:
        message = str(exc)
        assert "\n" not in message and (str(path) in message or str(folder) in message), message
        assert not re.search(r"\(\w+(Error|Exception|Warning)\)$", message), message  # words, not a class
    assert time.perf_counter() - start < WHOLE_READ_LIMIT


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_seed_file_reads_cleanly(kind, seeds, tmp_path):
    path = tmp_path / ("prepare.json" if kind == "manifest" else f"case{KINDS[kind]}")
    path.write_bytes(seeds[kind])
    assert read_as(kind, path, TIME_LIMIT)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("keep", [0, 0.1, 0.5])
def test_a_truncated_file_is_refused_naming_it(kind, keep, seeds, tmp_path):
    path = tmp_path / ("prepare.json" if kind == "manifest" else f"case{KINDS[kind]}")
    data = seeds[kind]
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MrdistillError, match=str(path.parent)):
        read_as(kind, path, TIME_LIMIT)
