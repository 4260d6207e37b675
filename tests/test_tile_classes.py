"""Runs of identical tiles fast-forwarded in steady state (run_classes) give the tile-by-tile pipeline's kernel ends
and stall cycles bit for bit (numba run_tiles and the Python reference run_tiles_py)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesim.core.kernels.pipeline import expand_runs, fold_tiles, run_classes, run_classes_py, run_tiles


@st.composite
def run_programs(draw, max_count=300):
    """Random kernels made of runs: whole- or quarter-cycle times (exact in float64), one engine and slots per
    kernel, dependencies on earlier kernels."""
    kernels = draw(st.integers(1, 4))
    times = st.integers(0, 200).map(lambda x: x / 4)
    rows = []
    for k in range(kernels):
        engine, slots = draw(st.integers(0, 1)), draw(st.integers(1, 2))
        dep = draw(st.integers(-1, k - 1)) if k else -1
        for _ in range(draw(st.integers(1, 4))):
            rows.append((draw(st.integers(1, max_count)), draw(times), draw(times), float(draw(st.integers(0, 80))),
                         engine, slots, dep, k))
    cols = list(zip(*rows, strict=True))
    count, load, store, compute, engine, slots, dep, kernel = (np.array(c) for c in cols)
    latency = draw(st.sampled_from([0.0, 3.0, 17.5, 100.0]))
    return (count.astype(np.int64), load.astype(float), store.astype(float), compute.astype(float),
            engine.astype(np.int64), slots.astype(np.int64), dep.astype(np.int64), kernel.astype(np.int64),
            kernels, latency)


def tile_by_tile(prog):
    """Kernel ends and stalls from the numba tile-by-tile pipeline on the expanded program."""
    count, load, store, compute, engine, slots, dep, kernel, kernels, latency = prog
    tile_kernel = np.repeat(kernel, count)
    last = np.full(kernels, -1, dtype=np.int64)
    np.maximum.at(last, tile_kernel, np.arange(tile_kernel.shape[0]))
    dep_tile = np.where(dep >= 0, last[np.maximum(dep, 0)], -1)
    tiles = expand_runs(count, load, store, compute, engine, slots, dep_tile)
    n = tiles[0].shape[0]
    times = run_tiles(*tiles, latency, np.zeros(n), np.full(n, -1, dtype=np.int64), 0.0)
    return fold_tiles(times, tile_kernel, kernels)


@settings(max_examples=300, deadline=None)
@given(run_programs())
def test_classes_equal_tile_by_tile_bit_for_bit(prog):
    end, waits, stepped = run_classes(*prog)
    ref_end, ref_waits, tiles = tile_by_tile(prog)
    py_end, py_waits, _ = run_classes_py(*prog)
    np.testing.assert_array_equal(end, ref_end)
    np.testing.assert_array_equal(waits, ref_waits)
    np.testing.assert_array_equal(py_end, ref_end)
    np.testing.assert_array_equal(py_waits, ref_waits)
    assert stepped <= 2 * tiles


def test_long_runs_cost_events_per_run_not_per_tile():
    # 3 kernels with runs of N tiles: a few hundred events whatever N, and each kernel's end grows linearly with N
    # (steady state), matching the tile-by-tile pipeline at N = 1,000 and 2,000 extrapolated to N = 10 million
    def program(n):
        count = np.array([1, n, 1, 1, n, 1, n], dtype=np.int64)
        return (count, np.array([64.0, 8.0, 8.0, 4.0, 4.0, 4.0, 16.0]), np.array([0.0, 0.0, 8.0, 0.0, 2.0, 2.0, 1.0]),
                np.array([30.0, 10.0, 10.0, 5.0, 5.0, 5.0, 20.0]), np.array([0, 0, 0, 1, 1, 1, 0]),
                np.array([2, 2, 2, 1, 1, 1, 2]), np.array([-1, -1, -1, 0, 0, 0, 1]), np.array([0, 0, 0, 1, 1, 1, 2]),
                3, 10.0)
    end, _, stepped = run_classes(*program(10_000_000))
    assert stepped < 500
    a, b = tile_by_tile(program(1000))[0], tile_by_tile(program(2000))[0]
    np.testing.assert_array_equal(end, a + (b - a) * (10_000_000 - 1000) / 1000)
