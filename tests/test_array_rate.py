"""array.macs_per_pe_cycle sets the array's rate (issue 20): p MACs per PE per cycle stream p elements a cycle."""
from __future__ import annotations

from archs import tiny_arch_dict
from hypothesis import given
from hypothesis import strategies as st

from tilesim.arch import arch_from_dict
from tilesim.arch.config import PEArray
from tilesim.compiler.cost import array_cycles, streamed_cycles
from tilesim.compiler.lowering import Contraction
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
