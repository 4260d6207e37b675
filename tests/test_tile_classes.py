"""Runs of identical tiles fast-forwarded in steady state (run_classes) give the tile-by-tile pipeline's kernel ends
and stall cycles bit for bit (numba run_tiles and the Python reference run_tiles_py)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
from archs import tiny_arch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_simulate import arch_with, tiled_contractions

from tilesim import simulate
from tilesim.compiler.cost import (
    LOOPS,
    a_runs,
    a_tile_bytes,
    b_runs,
    burst_bytes,
    c_runs,
    compute_cycles,
    extents,
    held_operand,
    nbytes,
    spatial_tiles,
    trip_counts,
)
from tilesim.compiler.schedule import Kernel, lower
from tilesim.core.commands import build_program, contraction_positions, contraction_runs, nest_run_count, split_runs
from tilesim.core.kernels.jit import interpreted
from tilesim.core.kernels.pipeline import (
    expand_runs,
    fold_tiles,
    run_class_groups,
    run_class_groups_py,
    run_classes,
    run_classes_py,
    run_tiles,
)
from tilesim.core.simulate import TIME_GRID, on_grid
from tilesim.workloads import gemm


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


# ---------------------------------------------------------------- contraction tiles as runs


def brute_force_contraction(work, kernel, arch, timing, flash_share=0.0):
    """Every tile of the full loop nest worked out one by one (the per-tile algorithm before issue 22), with the
    same split_runs rounding of compute and flash bytes."""
    mapping = kernel.mapping
    trips = trip_counts(work, mapping)
    order = mapping.order
    grid = np.indices((work.g, *tuple(trips[d] for d in order))).reshape(4, -1)
    g = grid[0]
    idx = {d: grid[1 + order.index(d)] for d in LOOPS}
    ext = {d: extents(getattr(work, d), mapping.tile(d))[idx[d]] for d in LOOPS}

    def changed(*keys):
        flag = np.zeros(keys[0].shape[0], dtype=bool)
        flag[0] = True
        for key in keys:
            flag[1:] |= key[1:] != key[:-1]
        return flag
    a_new, b_new = changed(g, idx["m"], idx["k"]), changed(g, idx["k"], idx["n"])
    c_visit = changed(g, idx["m"], idx["n"])
    c_last = np.append(c_visit[1:], True)
    reload, final = c_visit & (idx["k"] > 0), c_last & (idx["k"] == trips["k"] - 1)
    if mapping.hold:    # the held operand: each of its tiles loaded the first time it is touched in an outer iteration
        outer = g * trips[order[0]] + idx[order[0]]
        seen: set = set()

        def first_touch(*dims):
            flags = []
            for i in range(g.shape[0]):
                key = (outer[i], *(int(idx[d][i]) for d in dims))
                flags.append(key not in seen)
                seen.add(key)
            return np.array(flags, dtype=bool)
        if held_operand(order) == "input":
            a_new = first_touch("m", "k")
        elif held_operand(order) == "weight":
            b_new = first_touch("k", "n")
        else:                                           # partial sums stay: no reloads, one store at the end
            reload, c_last = np.zeros_like(reload), final
    c_elems = ext["m"] * ext["n"]
    acc, burst = arch.array.acc_dtype, arch.offchip.burst_bytes
    runs_a, runs_b, runs_c = (a_runs(work, ext["m"], ext["k"]), b_runs(work, ext["k"], ext["n"]),
                              c_runs(work, ext["m"], ext["n"]))
    psum = burst_bytes(np.where(reload, nbytes(c_elems, acc), 0), runs_c, burst)
    a_bytes = burst_bytes(np.where(a_new, a_tile_bytes(work, ext["m"], ext["k"]), 0), runs_a, burst)
    b_raw = np.where(b_new, nbytes(ext["k"] * ext["n"], work.b_dtype), 0)
    store = burst_bytes(np.where(final, nbytes(c_elems, work.c_dtype), np.where(c_last, nbytes(c_elems, acc), 0)),
                        runs_c, burst)
    ones = np.ones(g.shape[0], dtype=np.int64)
    flash = split_runs(round(flash_share * int(b_raw.sum())), b_raw, ones)[0] if flash_share else 0 * b_raw
    compute = split_runs(compute_cycles(work, arch, mapping.dataflow, timing, mapping.t_tile,
                                        spatial_tiles(work, mapping)),
                         ext["m"] * ext["n"] * ext["k"], ones)[0]
    return (a_bytes, burst_bytes(b_raw, runs_b, burst), psum, store, compute, flash)


@settings(max_examples=200, deadline=None)
@given(tiled_contractions(), st.sampled_from([1, 16]), st.sampled_from([0.0, 0.3]))
def test_contraction_runs_equal_the_full_loop_nest_tile_by_tile(case, burst, share):
    work, mapping = case
    arch = arch_with(burst=burst)
    kernel = Kernel("k", ("k",), work, mapping)
    runs = contraction_runs(work, kernel, arch, "pipelined", share)
    assert (runs.count > 0).all()
    tiles = runs.expanded()
    want = brute_force_contraction(work, kernel, arch, "pipelined", share)
    for field, expected in zip(("input_bytes", "weight_bytes", "psum_bytes", "store_bytes", "compute", "flash_bytes"),
                               want, strict=True):
        np.testing.assert_array_equal(getattr(tiles, field), expected, err_msg=field)
    # entries grow with the loop nest's positions, not its tiles
    assert runs.compute.shape[0] <= nest_run_count([c for _, c in contraction_positions(work, kernel)]) + 4


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 30)), min_size=1, max_size=8),
       st.integers(0, 10**6))
def test_split_runs_adds_up_and_keeps_identical_tiles_within_one(runs, total):
    weights = np.array([w for w, _ in runs])
    count = np.array([c for _, c in runs])
    if not (weights * count).sum():
        total = 0
    parts, new_count, moved = split_runs(total, weights, count)
    assert int((parts * new_count).sum()) == total
    np.testing.assert_array_equal(np.repeat(weights[moved], new_count), np.repeat(weights, count))
    per_tile = np.repeat(parts, new_count)
    exact = total * np.repeat(weights, count) / max(int((weights * count).sum()), 1)
    assert (per_tile >= np.floor(exact)).all() and (per_tile <= np.floor(exact) + 1).all()
    assert new_count.shape[0] <= count.shape[0] + 1


def test_split_runs_by_hand():
    # 10 cycles over 4 tiles of weight 1 and 1 of weight 2 (W = 6): floors 1,1,1,1,3 = 7, one more for the first 3
    parts, count, moved = split_runs(10, np.array([1, 2]), np.array([4, 1]))
    assert np.repeat(parts, count).tolist() == [2, 2, 2, 1, 3] and moved.tolist() == [0, 0, 1]


def test_interpreted_kernels_equal_compiled():
    # the Python run of the same kernel code (used for small programs before numba loads) gives the same numbers
    prog = (np.array([1, 40, 1, 7, 300], dtype=np.int64), np.array([9.0, 4.25, 0.0, 3.0, 8.5]),
            np.array([0.0, 2.0, 6.0, 0.0, 1.5]), np.array([20.0, 5.0, 5.0, 12.0, 7.0]), np.array([0, 0, 0, 1, 1]),
            np.array([2, 2, 2, 1, 1]), np.array([-1, -1, -1, 0, 0]), np.array([0, 0, 0, 1, 1]), 2, 13.0)
    fast = run_classes(*prog)
    with interpreted():
        slow = run_classes(*prog)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


WARM_UP = """
from tilesim.core.kernels.jit import is_compiled
from tilesim.core.kernels.pipeline import run_program
from tilesim.studies.sweep import warm_up
warm_up()
print(is_compiled(run_program))
"""


def test_a_sweeps_warm_up_loads_the_compiled_kernels():
    # warm_up's tiny run was small enough to be simulated in Python, so numba's kernels were not loaded before the
    # sweep forked its workers (each worker then interpreted its first ~10,000 runs and loaded them itself)
    done = subprocess.run([sys.executable, "-c", WARM_UP], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["True"], done.stderr


LOADING = """
import tilesim.compiler.mapper as mapper
from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.workloads import load_workload
arch = load_arch("tpu-v1")
schedule = lower(load_workload("gemm:64,64,64", dtype=arch.array.dtype), arch, CompileOptions(mapper="naive"))
simulate(schedule, arch)
before = mapper._KERNELS["estimate"] is not None
simulate(schedule, arch, timeline=True)
print(before, mapper._KERNELS["estimate"] is not None)
"""


def test_once_numba_loads_for_a_program_the_search_scores_compiled_too():
    # a small program stays in Python and leaves the search on numpy; a program that runs compiled (a timeline,
    # flash reads, a large one) loads numba's kernels, and from then on the search scores with them as well
    done = subprocess.run([sys.executable, "-c", LOADING], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["False", "True"], done.stderr


# ---------------------------------------------------------------- repeat groups: patterns of runs repeated


@st.composite
def grouped_programs(draw):
    """Random kernels, each: a few runs, then 1-3 times a pattern of 1-5 runs repeated 1-60 times (a repeat group;
    often the pattern before) followed by a few more runs; whole- or quarter-cycle times."""
    kernels = draw(st.integers(1, 3))
    times = st.integers(0, 120).map(lambda x: x / 4)
    rows, groups = [], []
    for k in range(kernels):
        engine, slots = draw(st.integers(0, 1)), draw(st.integers(1, 2))
        dep = draw(st.integers(-1, k - 1)) if k else -1

        def run(engine=engine, slots=slots, dep=dep, k=k):
            return (draw(st.integers(1, 6)), draw(times), draw(times), float(draw(st.integers(0, 40))), engine,
                    slots, dep, k)
        rows += [run() for _ in range(draw(st.integers(0, 3)))]
        pattern = [run() for _ in range(draw(st.integers(1, 5)))]
        for _ in range(draw(st.integers(1, 3))):        # groups of a kernel: often the same pattern again
            pattern = pattern if draw(st.booleans()) else [run() for _ in range(draw(st.integers(1, 5)))]
            reps = draw(st.integers(1, 60))
            groups.append((len(rows), len(pattern), reps))
            rows += pattern * reps
            rows += [run() for _ in range(draw(st.integers(0, 3)))]
    cols = list(zip(*rows, strict=True))
    count, load, store, compute, engine, slots, dep, kernel = (np.array(c) for c in cols)
    latency = draw(st.sampled_from([0.0, 3.0, 17.5]))
    g = np.array(groups, dtype=np.int64).reshape(-1, 3)
    return ((count.astype(np.int64), load.astype(float), store.astype(float), compute.astype(float),
             engine.astype(np.int64), slots.astype(np.int64), dep.astype(np.int64), kernel.astype(np.int64),
             kernels, latency), (g[:, 0].copy(), g[:, 1].copy(), g[:, 2].copy()))


@settings(max_examples=300, deadline=None)
@given(grouped_programs())
def test_repeat_groups_equal_tile_by_tile_bit_for_bit(case):
    prog, groups = case
    end, waits, stepped = run_class_groups(*prog, *groups)
    ref_end, ref_waits, tiles = tile_by_tile(prog)
    np.testing.assert_array_equal(end, ref_end)
    np.testing.assert_array_equal(waits, ref_waits)
    py_end, py_waits, _ = run_class_groups_py(*prog, *groups)
    np.testing.assert_array_equal(py_end, ref_end)
    np.testing.assert_array_equal(py_waits, ref_waits)
    assert stepped <= 2 * tiles
    with interpreted():                     # the same kernel code run as Python
        slow = run_class_groups(*prog, *groups)
    np.testing.assert_array_equal(slow[0], end)


def test_a_repeated_pattern_costs_events_per_repeat_class_not_per_repeat():
    # a kernel of 1 + 3 x R runs (a 3-run pattern repeated R times): a few hundred events whatever R, and the end
    # grows linearly with R, equal to the tile-by-tile pipeline at R = 100 and 200 extrapolated to R = 1 million
    def program(reps):
        count = np.array([1] + [2, 1, 3] * reps, dtype=np.int64)
        load = np.array([40.0] + [6.0, 0.0, 3.5] * reps)
        store = np.array([0.0] + [0.0, 9.0, 1.0] * reps)
        compute = np.array([12.0] + [7.0, 11.0, 2.0] * reps)
        n = count.shape[0]
        return ((count, load, store, compute, np.zeros(n, dtype=np.int64), np.full(n, 2, dtype=np.int64),
                 np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64), 1, 10.0),
                (np.array([1]), np.array([3]), np.array([reps])))
    prog, groups = program(1_000_000)
    end, _, stepped = run_class_groups(*prog, *groups)
    assert stepped < 500
    a, b = (tile_by_tile(program(r)[0])[0] for r in (100, 200))
    np.testing.assert_array_equal(end, a + (b - a) * (1_000_000 - 100) / 100)


def test_a_second_group_of_the_same_pattern_does_not_match_the_first_groups_states():
    # issue 29: h200 softmax at S = 8192 with 7.23 row passes took 9.76 G cycles against 22.5 M tile by tile: the
    # second group's repeat 3 matched the emptied history slot (-1 = 3 - 4) still holding the first group's state,
    # and jumped with the first group's reference time
    counts = np.array([1] * 3 + [2] + [1] * 23 + [2] + [1] * 23 + [2] + [1] * 5, dtype=np.int64)
    n = counts.shape[0]
    prog = (counts, np.full(n, 14569.291015625), np.full(n, 2015.1162109375), np.full(n, 640.0),
            np.ones(n, dtype=np.int64), np.full(n, 2, dtype=np.int64), np.full(n, -1, dtype=np.int64),
            np.zeros(n, dtype=np.int64), 1, 300.0)
    groups = (np.array([4, 28]), np.array([1, 1]), np.array([23, 23]))
    end = run_class_groups(*prog, *groups)[0]
    np.testing.assert_array_equal(end, tile_by_tile(prog)[0])
    assert end[0] == 995364.43359375


def test_times_on_a_binary_grid_repeat_exactly_with_any_bandwidth():
    # 16.3 bytes/cycle makes transfer times that are not binary fractions: on_grid rounds them to 1/1024 cycle so
    # sums are exact, the steady state repeats bit for bit and is jumped; the result equals the Python tile-by-tile
    # reference's, and the gridded times are rounded up by less than a grid step (never below the exact time)
    arch = tiny_arch(sram_bytes=8 << 10, latency=7, bw=16.3)
    schedule = lower(gemm(64, 64, 16384), arch)
    prog = build_program(schedule, arch)
    grid = on_grid(prog)
    for field in ("load_xfer", "store_xfer"):
        values = getattr(grid, field)
        assert (values * 1024 == np.round(values * 1024)).all()
        assert (values >= getattr(prog, field)).all()
        assert (values - getattr(prog, field)).max() < TIME_GRID
    assert simulate(schedule, arch).to_dict() == simulate(schedule, arch, reference=True).to_dict()
    # a transfer too short for the grid still takes one step (it moves bytes: it uses the channel, pays latency)
    tiny = on_grid(replace(prog, load_xfer=np.where(prog.load_xfer > 0, 1e-6, 0.0)))
    assert ((tiny.load_xfer == TIME_GRID) == (prog.load_xfer > 0)).all()
