"""The numba tile pipeline equals its Python reference exactly, and hand-computed cases hold."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba.core.cpu import CPUTargetOptions

from tilesim.core.kernels.jit import _njit
from tilesim.core.kernels.pipeline import DEPENDENCY, DRAM, FLASH, NONE, run_tiles, run_tiles_py


def run_both(load, store, compute, engine=None, slots=None, dep=None, latency=0.0, flash=None, gate=None,
             flash_latency=0.0):
    n = len(load)
    args = (np.asarray(load, float), np.asarray(store, float), np.asarray(compute, float),
            np.asarray(engine if engine is not None else [0] * n, np.int64),
            np.asarray(slots if slots is not None else [2] * n, np.int64),
            np.asarray(dep if dep is not None else [-1] * n, np.int64), float(latency),
            np.asarray(flash if flash is not None else [0] * n, float),
            np.asarray(gate if gate is not None else [-1] * n, np.int64), float(flash_latency))
    fast, slow = run_tiles(*args), run_tiles_py(*args)
    for f, s in zip(fast, slow, strict=False):
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
    flash = [draw(times) if draw(st.booleans()) else 0.0 for _ in range(n)]
    gate = [draw(st.integers(-1, i - 1)) if i else -1 for i in range(n)]
    flash_latency = draw(st.sampled_from([0.0, 5.0, 40.25]))
    return load, store, compute, engine, slots, dep, latency, flash, gate, flash_latency


@settings(max_examples=200, deadline=None)
@given(programs())
def test_numba_equals_reference(prog):
    _load, _store, _compute, _engine, _slots, _dep, _latency, flash, _gate, flash_latency = prog
    load_end, c_start, c_end, store_end, _stall, _cause, flash_end = run_both(*prog)
    # sanity of the rules themselves
    assert (c_start >= load_end - 1e-9).all()
    assert (store_end >= c_end - 1e-9).all()
    assert (np.diff(c_start) >= 0).all()
    assert (load_end >= flash_end - 1e-9).all()                       # a load waits for its flash data
    has = np.asarray(flash) > 0
    assert (flash_end[has] >= np.asarray(flash)[has] + flash_latency - 1e-9).all()


def test_single_tile_is_the_sum_of_its_phases():
    # load 48 cycles + latency 10, compute 78, store 32 + latency 10 -> 178
    _, _, c_end, s_end, _, _, _ = run_both([48], [32], [78], latency=10)
    assert c_end[0] == 48 + 10 + 78
    assert s_end[0] == 178


def test_without_double_buffering_phases_add_up():
    # one slot: every load waits for the previous compute -> n * (load + latency + compute)
    n, load, lat, c = 6, 5.0, 3.0, 20
    _, _, c_end, _, stall, cause, _ = run_both([load] * n, [0] * n, [c] * n, slots=[1] * n, latency=lat)
    assert c_end[-1] == n * (load + lat + c)
    assert list(stall) == [load + lat] * n and list(cause) == [DRAM] * n     # every tile waits for its load


def test_double_buffering_hides_loads_under_compute():
    # two slots and compute longer than load + latency -> first load, then back-to-back computes
    n, load, lat, c = 6, 5.0, 3.0, 20
    _, _, c_end, _, stall, cause, _ = run_both([load] * n, [0] * n, [c] * n, slots=[2] * n, latency=lat)
    assert c_end[-1] == load + lat + n * c
    assert list(stall) == [load + lat] + [0] * (n - 1) and list(cause) == [DRAM] + [NONE] * (n - 1)


def test_memory_bound_stream_is_bytes_over_bandwidth():
    # pure copy: n tiles of x cycles in and x out share one channel -> 2 n x when the channel never idles
    n, x = 10, 7.0
    _, _, _, s_end, _, _, _ = run_both([x] * n, [x] * n, [0] * n)
    assert s_end[-1] == 2 * n * x


def test_dependency_waits_for_producer_store():
    # tile 1 (another kernel) may not load before tile 0's store has landed
    load_end, _, _, s_end, stall, cause, _ = run_both([4, 4], [6, 0], [10, 1], dep=[-1, 0], latency=2)
    assert s_end[0] == 4 + 2 + 10 + 6 + 2
    assert load_end[1] == s_end[0] + 4 + 2
    # tile 1 could start when tile 0's compute ended (16); its load landed at 30: 14 cycles waiting on a producer
    assert stall[1] == 30 - 16 and cause[1] == DEPENDENCY


def test_vector_and_array_engines_overlap_when_independent():
    # an array tile and an independent vector tile: the vector tile runs while the array is busy
    _, c_start, c_end, _, _, _, _ = run_both([0, 0], [0, 0], [100, 30], engine=[0, 1])
    assert c_start[1] == 0 and c_end[1] == 30


def test_flash_reads_stream_ahead_on_their_own_channel():
    # 4 tiles, each 10 cycles of flash, then 2 cycles of DRAM load, 1 cycle of compute; flash latency 5, no limit
    # on staging: the flash channel streams back to back, tile i's data in DRAM at 10 (i + 1) + 5, then its DRAM
    # load (2) and compute (1): the last compute ends at 45 + 2 + 1 = 48, flash-bound
    n = 4
    load_end, _, c_end, _, stall, cause, flash_end = run_both([2] * n, [0] * n, [1] * n, flash=[10] * n,
                                                              flash_latency=5)
    assert list(flash_end) == [15, 25, 35, 45]
    assert list(load_end) == [17, 27, 37, 47]
    assert c_end[-1] == 48
    assert list(cause) == [FLASH] * n and list(stall) == [17, 9, 9, 9]


def test_staging_limit_serialises_flash_reads_behind_loads():
    # gate[i] = i - 1: a tile's flash read waits until the previous tile's DRAM load has arrived (one tile staged)
    n, f, load, lat = 3, 10, 4, 3
    load_end, _, _, _, _, _, flash_end = run_both([load] * n, [0] * n, [0] * n, latency=lat, flash=[f] * n,
                                                  gate=[-1, 0, 1])
    # per tile: flash f, then the DRAM load (load + lat); the next flash read starts when that load has arrived
    assert list(flash_end) == [10, 10 + 7 + 10, 2 * (10 + 7) + 10]
    assert load_end[-1] == n * (f + load + lat)


def test_zero_byte_flash_reads_constrain_nothing():
    _, _, c_end, _, _, cause, flash_end = run_both([5, 5], [0, 0], [1, 1], flash=[0, 0], gate=[-1, 0])
    assert list(flash_end) == [0, 0] and c_end[-1] == 11 and DRAM in cause


def _add_into(out, x):
    """A helper that allocates nothing (a leaf)."""
    out[0] += x


def test_a_leaf_is_compiled_without_reference_counts_where_numba_has_the_option(monkeypatch):
    """leaf_njit's helpers (the pipeline's inner-loop calls, 384 -> 31 ns an event) pass numba's private _nrt=False;
    a numba without that option compiles them as any kernel instead of failing at the first call."""
    assert _njit(_add_into, leaf=True).targetoptions.get("_nrt") is False
    assert "_nrt" not in _njit(_add_into).targetoptions
    owner = next(c for c in CPUTargetOptions.__mro__ if "_nrt" in vars(c))
    monkeypatch.delattr(owner, "_nrt")
    assert "_nrt" not in _njit(_add_into, leaf=True).targetoptions
