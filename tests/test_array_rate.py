"""The array's timing: array.macs_per_pe_cycle sets its rate (issue 20): p MACs per PE per cycle stream p elements a
cycle; each spatial tile folds on its own (issue 21)."""
from __future__ import annotations

import numpy as np
from archs import tiny_arch_dict
from hypothesis import given
from hypothesis import strategies as st

from tilesim.arch import arch_from_dict
from tilesim.arch.config import PEArray
from tilesim.compiler.cost import Mapping, array_cycles, compute_cycles, spatial_tiles, streamed_cycles, tiled_folds
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.mapper import _base
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.simulate import simulate
from tilesim.workloads import load_workload


def arch(macs_per_pe_cycle: int):
    """tiny_arch (16x16 WS) whose SRAM can feed any rate, with the given MACs per PE per cycle."""
    d = tiny_arch_dict(bw=1 << 20)
    d["array"]["macs_per_pe_cycle"] = macs_per_pe_cycle
    d["memory"][1]["bandwidth_bytes_per_cycle"] = 1 << 20
    return arch_from_dict(d)


def test_doubling_macs_per_pe_cycle_halves_a_compute_bound_gemm():
    graph = load_workload("gemm:4096,64,64", dtype="int8")     # WS: M = 4096 streams through 4x4 folds
    runs = [simulate(lower(graph, arch(p), CompileOptions(mapper="naive")), arch(p)) for p in (1, 2)]
    one, two = (r.kernels[0].compute_cycles for r in runs)
    # pipelined WS, one tile: preload R + folds * T/p + R + C - 2, T = 4096, 16 folds, R = C = 16
    assert (one, two) == (16 + 16 * 4096 + 30, 16 + 16 * 2048 + 30)
    assert runs[1].peak_macs_per_cycle == 2 * runs[0].peak_macs_per_cycle
    assert all(0 < r.pe_utilization <= 1 for r in runs)


@given(st.integers(1, 5000), st.integers(1, 8))
def test_streamed_cycles_round_up(t, p):
    array = PEArray(rows=4, cols=4, macs_per_pe_cycle=p)
    assert streamed_cycles(t, array) == -(-t // p) and streamed_cycles(t, array) * p >= t


def test_scalesim_timing_with_one_mac_per_pe_is_unchanged():
    work = Contraction(1, 100, 8, 12, "int8", "int8", "int8")
    # OS: Sr = M = 100, Sc = N = 8, T = K = 12; folds 25 x 2; SCALE-Sim: F * (T + R + C - 2) - 1
    assert array_cycles(work, PEArray(rows=4, cols=4), "os", "scalesim", 1) == 25 * 2 * (12 + 4 + 4 - 2) - 1


def test_a_spatial_tile_that_leaves_the_array_idle_still_takes_a_whole_fold():
    # case 3055's GEMM (M 96, N 80, K 72) on a 19x483 WS array: K on the rows, N on the columns, M streams. Tiles
    # of K = 5 fold 14 times at 5 rows and once at 2: 15 folds, where the whole K takes ceil(72 / 19) = 4; the
    # array's time counted the 4, so a tiling that used 5 of 19 rows ran as fast as one that used them all
    work = Contraction(1, 96, 80, 72, "int8", "int8", "int8")
    array = PEArray(rows=19, cols=483)
    assert [int(tiled_folds(72, t, 19)) for t in (5, 19, 38, 72, 9)] == [15, 4, 4, 4, 8]
    whole = array_cycles(work, array, "ws", "pipelined", 96)
    assert whole == 19 + 4 * 96 + 19 + 483 - 2
    assert array_cycles(work, array, "ws", "pipelined", 96, (19, 80)) == whole          # aligned: unchanged
    assert array_cycles(work, array, "ws", "pipelined", 96, (5, 80)) == 19 + 15 * 96 + 19 + 483 - 2
    # scalesim timing keeps SCALE-Sim's whole-layer folds
    assert array_cycles(work, array, "ws", "scalesim", 96, (5, 80)) == array_cycles(work, array, "ws", "scalesim", 96)


@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 300), st.sampled_from(["ws", "os", "is"]),
       st.integers(1, 300), st.integers(1, 300), st.integers(1, 300), st.integers(1, 40), st.integers(1, 40))
def test_the_searchs_compute_cycles_equal_the_simulators(m, n, k, dataflow, tm, tn, tk, rows, cols):
    d = tiny_arch_dict()
    d["array"].update(rows=rows, cols=cols)
    target = arch_from_dict(d)
    work = Contraction(1, m, n, k, "int8", "int8", "int8")
    mapping = Mapping(dataflow, min(tm, m), min(tn, n), min(tk, k))
    one = np.array([1])
    base = _base(work, target, "pipelined", dataflow, one * mapping.tile_m, one * mapping.tile_n, one * mapping.tile_k)
    assert int(base.compute[0]) == compute_cycles(work, target, dataflow, "pipelined", mapping.t_tile,
                                                  spatial_tiles(work, mapping))
