"""The numba tile pipeline equals its Python reference exactly, and hand-computed cases hold."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.kernels.pipeline import DEPENDENCY, DRAM, NONE, run_tiles, run_tiles_py


def run_both(load, store, compute, engine=None, slots=None, dep=None, latency=0.0):
    n = len(load)
    args = (np.asarray(load, float), np.asarray(store, float), np.asarray(compute, float),
            np.asarray(engine if engine is not None else [0] * n, np.int64),
            np.asarray(slots if slots is not None else [2] * n, np.int64),
            np.asarray(dep if dep is not None else [-1] * n, np.int64), float(latency))
    fast, slow = run_tiles(*args), run_tiles_py(*args)
    for f, s in zip(fast, slow):
        np.testing.assert_array_equal(f, s)
    return fast


@st.composite
def programs(draw):
    n = draw(st.integers(1, 40))
    times = st.floats(0, 50, allow_nan=False).map(lambda x: float(int(x * 4)) / 4)
    load = draw(st.lists(times, min_size=n, max_size=n))
    store = draw(st.lists(times, min_size=n, max_size=n))
    compute = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    engine = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    slots = draw(st.lists(st.integers(1, 2), min_size=n, max_size=n))
    dep = [draw(st.integers(-1, i - 1)) if i else -1 for i in range(n)]
    latency = draw(st.sampled_from([0.0, 3.0, 17.5]))
    return load, store, compute, engine, slots, dep, latency


@settings(max_examples=150, deadline=None)
@given(programs())
def test_numba_equals_reference(prog):
    load, store, compute, engine, slots, dep, latency = prog
    load_end, c_start, c_end, store_end, stall, cause = run_both(load, store, compute, engine, slots, dep, latency)
    # sanity of the rules themselves
    assert (c_start >= load_end - 1e-9).all()
    assert (store_end >= c_end - 1e-9).all()
    assert (np.diff(c_start) >= 0).all()


def test_single_tile_is_the_sum_of_its_phases():
    # load 48 cycles + latency 10, compute 78, store 32 + latency 10 -> 178
    _, _, c_end, s_end, _, _ = run_both([48], [32], [78], latency=10)
    assert c_end[0] == 48 + 10 + 78
    assert s_end[0] == 178


def test_without_double_buffering_phases_add_up():
    # one slot: every load waits for the previous compute -> n * (load + latency + compute)
    n, l, lat, c = 6, 5.0, 3.0, 20
    _, _, c_end, _, stall, cause = run_both([l] * n, [0] * n, [c] * n, slots=[1] * n, latency=lat)
    assert c_end[-1] == n * (l + lat + c)
    assert list(stall) == [l + lat] * n and list(cause) == [DRAM] * n     # every tile waits for its load


def test_double_buffering_hides_loads_under_compute():
    # two slots and compute longer than load + latency -> first load, then back-to-back computes
    n, l, lat, c = 6, 5.0, 3.0, 20
    _, _, c_end, _, stall, cause = run_both([l] * n, [0] * n, [c] * n, slots=[2] * n, latency=lat)
    assert c_end[-1] == l + lat + n * c
    assert list(stall) == [l + lat] + [0] * (n - 1) and list(cause) == [DRAM] + [NONE] * (n - 1)


def test_memory_bound_stream_is_bytes_over_bandwidth():
    # pure copy: n tiles of x cycles in and x out share one channel -> 2 n x when the channel never idles
    n, x = 10, 7.0
    _, _, _, s_end, _, _ = run_both([x] * n, [x] * n, [0] * n)
    assert s_end[-1] == 2 * n * x


def test_dependency_waits_for_producer_store():
    # tile 1 (another kernel) may not load before tile 0's store has landed
    load_end, _, _, s_end, stall, cause = run_both([4, 4], [6, 0], [10, 1], dep=[-1, 0], latency=2)
    assert s_end[0] == 4 + 2 + 10 + 6 + 2
    assert load_end[1] == s_end[0] + 4 + 2
    # tile 1 could start when tile 0's compute ended (16); its load landed at 30: 14 cycles waiting on a producer
    assert stall[1] == 30 - 16 and cause[1] == DEPENDENCY


def test_vector_and_array_engines_overlap_when_independent():
    # an array tile and an independent vector tile: the vector tile runs while the array is busy
    _, c_start, c_end, _, _, _ = run_both([0, 0], [0, 0], [100, 30], engine=[0, 1])
    assert c_start[1] == 0 and c_end[1] == 30
