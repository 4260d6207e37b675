"""End-to-end checks on tiny cases computed by hand, the closed-form traffic model, and analytic bounds."""
from __future__ import annotations

import itertools
from dataclasses import replace
from math import ceil

import numpy as np
import pytest
from archs import tiny_arch, tiny_arch_dict
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesim import simulate
from tilesim.arch import InputError, arch_from_dict, arch_to_dict, load_arch
from tilesim.compiler import GraphBuilder
from tilesim.compiler.cost import Mapping, compute_cycles, dram_traffic, spatial_tiles
from tilesim.compiler.lowering import Contraction, ConvWindow
from tilesim.compiler.schedule import CompileOptions, Kernel, Schedule, lower
from tilesim.compiler.tiling import footprint
from tilesim.core import simulate as sim
from tilesim.core.commands import build_program, contraction_commands, staging_gate, weights_in_flash
from tilesim.core.simulate import level_bound
from tilesim.workloads import gemm, load_workload


def run(graph, arch, timing=None, reference=False, mapper="search"):
    return simulate(lower(graph, arch, CompileOptions(timing=timing, mapper=mapper)), arch, reference=reference)


@pytest.mark.parametrize("timing, compute", [("pipelined", 16 + 32 + 30), ("scalesim", 2 * 16 + 16 + 32 - 2 - 1)])
def test_one_gemm_tile_that_fits(timing, compute):
    # 16x16 WS array, GEMM M=32 N=16 K=16 int8, DRAM 16 B/cycle, latency 10, everything fits in one tile.
    # load A 512 B + B 256 B = 48 cycles (+10 latency); compute: pipelined preload 16 + max(T=32, 16) + R+C-2 = 78,
    # scalesim 1 fold x (2R + C + T - 2) - 1 = 77; store C 512 B = 32 cycles (+10).
    arch = tiny_arch(latency=10)
    r = run(gemm(32, 16, 16), arch, timing, mapper="naive")
    assert r.kernels[0].tiles == 1
    assert r.kernels[0].compute_cycles == compute
    assert r.cycles == 48 + 10 + compute + 32 + 10
    assert (r.dram_read_bytes, r.dram_write_bytes) == (768, 512)
    assert r.macs == 32 * 16 * 16


@pytest.mark.parametrize("latency", [0, 10, 100])
def test_bandwidth_bound_copy_is_bytes_over_bandwidth_plus_latency(latency):
    # a transpose moves 64 KiB in and 64 KiB out over a 16 B/cycle channel: 2 * 65536 / 16 cycles of transfers;
    # latency overlaps later transfers and shows once, at the end
    b = GraphBuilder("copy")
    x = b.input("x", (256, 256))
    arch = tiny_arch(sram_bytes=16 << 10, latency=latency)      # small buffer -> many tiles, still one channel
    r = run(b.build(b.add("Transpose", [x], {"perm": (1, 0)})), arch)
    assert r.kernels[0].tiles > 1
    assert r.cycles == 2 * 65536 // 16 + latency
    assert r.kernels[0].bound == "memory"
    assert r.mbu == pytest.approx(8192 / (8192 + latency))


def test_reference_pipeline_gives_the_same_result():
    arch = tiny_arch(sram_bytes=64 << 10, latency=7)
    g = load_workload("resnet18")
    assert run(g, arch).to_dict() == run(g, arch, reference=True).to_dict()


# ---------------------------------------------------------------- closed-form traffic == per-tile commands

@st.composite
def tiled_contractions(draw):
    m, n, k = (draw(st.integers(1, 70)) for _ in range(3))
    conv = draw(st.booleans())
    window = None
    if conv:
        out_w = draw(st.integers(1, 8))
        m = out_w * draw(st.integers(1, 8))
        r = draw(st.sampled_from([1, 3]))
        stride = draw(st.sampled_from([1, 2]))
        out_h = m // out_w
        window = ConvWindow(out_w=out_w, stride_h=stride, span_h=r, in_h=(out_h - 1) * stride + r,
                            in_w=(out_w - 1) * stride + r, window=r * r)
        k = r * r * draw(st.integers(1, 6))
    work = Contraction(g=draw(st.integers(1, 3)), m=m, n=n, k=k, a_dtype="int8", b_dtype="int8",
                       c_dtype=draw(st.sampled_from(["int8", "bf16", "int4"])), window=window)
    mapping = Mapping(draw(st.sampled_from(["ws", "os", "is"])), draw(st.integers(1, m)),
                      draw(st.integers(1, n)), draw(st.integers(1, k)),
                      draw(st.sampled_from(["".join(p) for p in itertools.permutations("mnk")])), draw(st.booleans()))
    return work, mapping


@settings(max_examples=200, deadline=None)
@given(tiled_contractions())
def test_commands_add_up_to_closed_form_traffic(case):
    work, mapping = case
    arch = tiny_arch()
    kernel = Kernel("k", ("k",), work, mapping)
    cmds = contraction_commands(work, kernel, arch, "pipelined")
    t = dram_traffic(work, mapping, arch.array.acc_dtype)
    assert int(cmds.input_bytes.sum()) == t.input_read
    assert int(cmds.weight_bytes.sum()) == t.weight_read
    assert int(cmds.psum_bytes.sum()) == t.psum_read
    assert int(cmds.store_bytes.sum()) == t.output_write
    assert int(cmds.compute.sum()) == compute_cycles(work, arch, mapping.dataflow, "pipelined",
                                                     mapping.tile({"ws": "m", "os": "k", "is": "n"}[mapping.dataflow]),
                                                     spatial_tiles(work, mapping))


def test_traffic_by_hand_for_k_outer_order():
    # M=N=K=4, tiles 2: order k,m,n -> A swept once, B swept once per m tile... by hand:
    # A depends on (m,k): innermost relevant loop is m (pos 1); irrelevant loops at or above it: k (relevant) -> 1 sweep
    # B depends on (k,n): innermost relevant n (pos 2); irrelevant m at pos 1 has 2 trips -> 2 sweeps
    # C depends on (m,n): innermost n (pos 2); irrelevant k at pos 0 has 2 trips -> 2 visits, 1 spill at int32
    work = Contraction(1, 4, 4, 4, "int8", "int8", "int8")
    t = dram_traffic(work, Mapping("ws", 2, 2, 2, "kmn"), "int32")
    assert (t.input_read, t.weight_read, t.psum_read, t.output_write) == (16, 32, 64, 16 + 64)


def test_held_operands_by_hand():
    # M=N=K=4, tiles 2. Order mnk: A (m, k) is swept once per n tile (2 sweeps of 16 B); held, once, its tile
    # 2 x K. Order mkn: C spills its partial sums once (64 B at int32) and reloads them; held, it
    # accumulates on chip, its tile 2 x N at int32
    work = Contraction(1, 4, 4, 4, "int8", "int8", "int8")
    arch = tiny_arch()
    for order, held, plain, kept in (("mnk", "input", (32, 32, 0, 16), (16, 32, 0, 16)),
                                     ("mkn", "output", (16, 32, 64, 80), (16, 32, 0, 16))):
        for hold, want in ((False, plain), (True, kept)):
            mapping = Mapping("ws", 2, 2, 2, order, hold)
            assert mapping.held == (held if hold else None)
            t = dram_traffic(work, mapping, "int32")
            assert (t.input_read, t.weight_read, t.psum_read, t.output_write) == want
            cmds = contraction_commands(work, Kernel("k", ("k",), work, mapping), arch, "pipelined")
            assert (int(cmds.input_bytes.sum()), int(cmds.weight_bytes.sum()), int(cmds.psum_bytes.sum()),
                    int(cmds.store_bytes.sum())) == want
    # one double-buffered level holds all: A 2x2 + B 2x2 + C 2x2 at int32 = 24 B, twice; held A 2x4: 28 B, twice
    assert footprint(work, Mapping("ws", 2, 2, 2, "mnk"), arch) == {"sram": 48}
    assert footprint(work, Mapping("ws", 2, 2, 2, "mnk", True), arch) == {"sram": 56}
    assert Mapping("ws", 2, 2, 2, "mkn", True).describe() == "ws m=2 n=2 k=2 order=mkn hold=output"


# ---------------------------------------------------------------- bounds and properties

@st.composite
def gemm_cases(draw):
    m, n, k = (draw(st.integers(1, 300)) for _ in range(3))
    arch = tiny_arch(rows=draw(st.sampled_from([4, 8, 16])), cols=draw(st.sampled_from([4, 8, 16])),
                     dataflow=draw(st.sampled_from(["ws", "os", "is"])), bw=draw(st.sampled_from([1, 8, 64])),
                     latency=draw(st.sampled_from([0, 20])), sram_bytes=draw(st.sampled_from([4096, 1 << 20])),
                     double=draw(st.booleans()))
    return m, n, k, arch


@settings(max_examples=60, deadline=None)
@given(gemm_cases(), st.sampled_from(["pipelined", "scalesim"]))
def test_cycles_respect_compute_and_memory_bounds(case, timing):
    m, n, k, arch = case
    r = run(gemm(m, n, k), arch, timing)
    assert 0 < r.pe_utilization <= 1
    assert 0 <= r.mbu <= 1 + 1e-12
    assert r.cycles >= ceil(m * n * k / arch.peak_macs_per_cycle)
    assert r.cycles >= (r.dram_read_bytes + r.dram_write_bytes) / arch.offchip.bandwidth_bytes_per_cycle
    assert r.cycles >= r.kernels[0].compute_cycles
    assert r.dram_read_bytes >= m * k + k * n          # every operand byte is read at least once
    assert r.dram_write_bytes >= m * n
    assert r.energy_pj == pytest.approx(sum(r.energy_breakdown_pj.values()))


def test_kernel_cycles_partition_the_total():
    arch = tiny_arch(sram_bytes=256 << 10)
    r = run(load_workload("bert-base", seq_len=32), arch)
    assert sum(k.cycles for k in r.kernels) == r.cycles
    assert sum(k.dram_read_bytes for k in r.kernels) == r.dram_read_bytes
    assert sum(k.energy_pj for k in r.kernels) == pytest.approx(r.energy_pj)


def test_energy_is_counts_times_table():
    # every entry is 1 pJ: energy = MACs + DRAM bytes + SRAM accesses + vector ops; doubling the table doubles it

    r1 = run(gemm(32, 16, 16), tiny_arch(), mapper="naive")
    assert r1.energy_breakdown_pj["mac"] == 32 * 16 * 16
    assert r1.energy_breakdown_pj["dram"] == 768 + 512
    d = tiny_arch_dict()
    for e in d["energy"]["actions"].values():
        e["pj"] = 2.0
    r2 = run(gemm(32, 16, 16), arch_from_dict(d), mapper="naive")
    assert r2.energy_pj == pytest.approx(2 * r1.energy_pj)


def test_static_power_adds_power_times_time():
    r0 = run(gemm(64, 64, 64), tiny_arch())
    r1 = run(gemm(64, 64, 64), tiny_arch(static_mw=1000.0))       # 1 W for cycles ns
    assert r1.energy_breakdown_pj["static"] == pytest.approx(1e12 * r1.cycles / 1e9)
    assert r1.energy_pj - r1.energy_breakdown_pj["static"] == pytest.approx(r0.energy_pj)


def test_missing_energy_entry_is_an_error_not_zero():

    d = tiny_arch_dict()
    del d["energy"]["actions"]["mac.int8"]
    with pytest.raises(InputError, match=r"mac.int8"):
        run(gemm(8, 8, 8), arch_from_dict(d))


def test_more_bandwidth_is_never_slower():
    g = load_workload("mobilenet_v2")
    # same mapping at every bandwidth (the search may pick other tilings when bandwidth changes)
    cycles = [run(g, tiny_arch(bw=bw, sram_bytes=128 << 10), mapper="naive").cycles for bw in (2, 8, 32, 128)]
    assert cycles == sorted(cycles, reverse=True)


def test_decode_gemv_is_memory_bound():
    arch = load_arch("edge-npu")
    r = run(gemm(1, 4096, 4096), arch)
    assert r.kernels[0].bound == "memory"
    assert r.mbu > 0.95 and r.pe_utilization < 0.02


@pytest.mark.parametrize("dataflow, feeds", [
    # M=10, N=20, K=40 on 8x8. WS: Sr=K=40 -> Fr=5, Sc=N=20 -> Fc=3: ifmap M*K*Fc=1200, filter K*N=800,
    # ofmap M*N*Fr=1000. OS: Sr=M=10 -> Fr=2, Sc=N -> Fc=3: 1200, K*N*Fr=1600, M*N=200.
    # IS: Sr=K -> Fr=5, Sc=M=10 -> Fc=2: ifmap K*M=400, filter K*N*Fc=1600, ofmap M*N*Fr=1000.
    ("ws", (1200, 800, 1000)), ("os", (1200, 1600, 200)), ("is", (400, 1600, 1000)),
])
def test_sram_accesses_per_operand_match_scalesim_formulas(dataflow, feeds):
    r = run(gemm(10, 20, 40), tiny_arch(rows=8, cols=8, dataflow=dataflow), "scalesim", mapper="naive")
    k = r.kernels[0]
    assert (k.sram_input_reads, k.sram_weight_reads, k.sram_output_writes) == feeds
    assert (k.dram_input_read_bytes, k.dram_weight_read_bytes, k.dram_output_write_bytes) == (400, 800, 200)


def test_roofline_coordinates_respect_both_ceilings():
    # attained MACs/cycle <= min(peak, intensity x bandwidth): the roofline holds for every kernel
    arch = tiny_arch(bw=8, sram_bytes=64 << 10)
    r = run(load_workload("resnet18"), arch)
    for k in r.kernels:
        if k.engine != "array":
            continue
        assert k.arithmetic_intensity == pytest.approx(k.macs / (k.dram_read_bytes + k.dram_write_bytes))
        assert k.attained_macs_per_cycle <= arch.peak_macs_per_cycle
        assert k.attained_macs_per_cycle <= k.arithmetic_intensity * 8 * (1 + 1e-12)


def test_stalls_by_cause_engines_and_levels_are_reported():
    arch = tiny_arch(bw=4, latency=50, sram_bytes=64 << 10)
    r = run(load_workload("resnet18"), arch)
    for k in r.kernels:
        waits = k.stall_dram_cycles + k.stall_dependency_cycles + k.stall_slot_cycles + k.stall_order_cycles
        assert 0 <= waits <= r.cycles
    assert sum(k.stall_dram_cycles + k.stall_dependency_cycles for k in r.kernels) > 0   # bandwidth-starved
    assert set(r.engine_busy) == {"array", "vector", "dma"}
    assert all(0 <= v <= 1 + 1e-9 for v in r.engine_busy.values())
    assert r.engine_busy["dma"] == pytest.approx((r.dram_read_bytes + r.dram_write_bytes) / 4 / r.cycles)
    assert r.memory_traffic["dram"]["read_bytes"] == r.dram_read_bytes
    assert r.memory_traffic["dram"]["bandwidth_utilization"] == pytest.approx(r.mbu)
    assert r.memory_traffic["sram"]["write_bytes"] >= r.dram_read_bytes        # every DRAM byte lands in SRAM


def test_a_narrow_sram_stretches_compute():
    # 16x16 WS GEMM; the SRAM holds everything at 2 B/cycle, far below the ~80 B/cycle the array consumes


    def with_sram_bw(bw):
        d = tiny_arch_dict()
        d["memory"][1]["bandwidth_bytes_per_cycle"] = bw
        return arch_from_dict(d)
    # a 16x16 int8 WS array takes 16 B of inputs and reads+writes 16 int32 psums per cycle: ~144 B/cycle
    wide, narrow = with_sram_bw(1024), with_sram_bw(2)
    a, b = run(gemm(256, 64, 64), wide, mapper="naive"), run(gemm(256, 64, 64), narrow, mapper="naive")
    assert a.kernels[0].sram_wait_cycles == 0 and b.kernels[0].sram_wait_cycles > 0
    assert b.kernels[0].compute_cycles == a.kernels[0].compute_cycles + b.kernels[0].sram_wait_cycles
    assert b.memory_traffic["sram"]["bandwidth_utilization"] > 0.99


@settings(max_examples=40, deadline=None)
@given(*[st.sampled_from([16, 32, 64, 128, 256, 512])] * 3, st.sampled_from([1, 4, 32]))
def test_double_buffering_overlaps_and_single_buffering_adds(m, n, k, bw):
    # power-of-two shapes give equal tiles; with unequal ones a short tile cannot hide the next long load, and
    # the pipeline tests cover that tile by tile
    for double in (True, False):
        arch = tiny_arch(bw=bw, latency=5, sram_bytes=8 << 10, double=double)
        schedule = lower(gemm(m, n, k), arch, CompileOptions(mapper="naive"))
        r = simulate(schedule, arch)
        cmds = level_bound(build_program(schedule, arch), schedule, arch).per_kernel[0].expanded()   # as timed
        xfer = (cmds.load_bytes + cmds.store_bytes) / bw
        compute, dma = float(cmds.compute.sum()), float(xfer.sum())
        if double:     # within a tile's load + compute + store (and latencies) of the larger of the two, plus
            #            what one channel loses ordering a tile's store against the next loads (one more tile)
            one_tile = float((xfer + cmds.compute).max()) + 2 * 5
            assert max(compute, dma) <= r.cycles <= max(compute, dma) + 2 * one_tile + 1
        else:          # nothing overlaps but a tile's store with the next tile's load
            assert r.cycles >= compute + float((cmds.load_bytes / bw).sum())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.integers(1, 200), st.sampled_from(["ws", "os", "is"]),
       st.sampled_from([1, 4, 16]), st.sampled_from([0, 30]))
def test_same_mapping_more_bandwidth_never_slower_bigger_buffer_same_traffic(m, n, k, dataflow, bw, latency):
    # the mapping is fixed (naive on the smallest arch), then bandwidth and capacity grow under it
    small = tiny_arch(rows=8, cols=8, dataflow=dataflow, bw=bw, latency=latency, sram_bytes=8 << 10)
    schedule = lower(gemm(m, n, k), small, CompileOptions(mapper="naive", fusion="none"))
    faster = tiny_arch(rows=8, cols=8, dataflow=dataflow, bw=2 * bw, latency=latency, sram_bytes=8 << 10)
    bigger = tiny_arch(rows=8, cols=8, dataflow=dataflow, bw=bw, latency=latency, sram_bytes=64 << 10)
    base = simulate(schedule, small)
    assert simulate(schedule, faster).cycles <= base.cycles
    again = simulate(schedule, bigger)
    assert (again.dram_read_bytes, again.dram_write_bytes) == (base.dram_read_bytes, base.dram_write_bytes)
    # bytes are conserved between levels: every byte read off chip lands in SRAM, every byte written off chip
    # was read out of SRAM
    sram = base.memory_traffic["sram"]
    assert sram["write_bytes"] >= base.dram_read_bytes and sram["read_bytes"] >= base.dram_write_bytes


# ---------------------------------------------------------------- bursts, on-chip latency, flash

def arch_with(burst=1, sram_latency=0, flash=None, sram_bw=64, **kw):
    """tiny_arch with a DRAM burst, an SRAM access latency and bandwidth, and optionally a flash level (a dict of
    its fields)."""

    d = tiny_arch_dict(**kw)
    d["memory"][0]["burst_bytes"] = burst
    d["memory"][1]["latency_cycles"] = sram_latency
    d["memory"][1]["bandwidth_bytes_per_cycle"] = sram_bw
    if flash is not None:
        d["memory"].insert(0, dict({"name": "flash", "kind": "flash", "capacity_bytes": 1 << 34, "holds": ["weight"]},
                                   **flash))
        d["energy"]["actions"]["flash.read_byte"] = {"pj": 5.0, "source": "test"}
    return arch_from_dict(d)


@settings(max_examples=150, deadline=None)
@given(tiled_contractions(), st.sampled_from([1, 4, 64]), st.booleans())
def test_commands_add_up_to_closed_form_traffic_with_bursts(case, burst, b_is_param):
    work, mapping = case
    work = replace(work, b_is_param=b_is_param)
    arch = arch_with(burst=burst)
    cmds = contraction_commands(work, Kernel("k", ("k",), work, mapping), arch, "pipelined")
    t = dram_traffic(work, mapping, arch.array.acc_dtype, burst)
    assert (int(cmds.input_bytes.sum()), int(cmds.weight_bytes.sum()), int(cmds.psum_bytes.sum()),
            int(cmds.store_bytes.sum())) == (t.input_read, t.weight_read, t.psum_read, t.output_write)
    plain = dram_traffic(work, mapping, arch.array.acc_dtype)
    assert t.read >= plain.read and t.write >= plain.write and (burst > 1 or t == plain)


def test_bursts_round_each_contiguous_run_by_hand():
    # M=3 N=16 K=5 int8, tiles m=3 n=8 k=5, 16-byte bursts. A: one tile spanning whole rows of K: one run of 15 B
    # -> 16. B (weights, laid out by tile): 2 tiles of 40 B -> 48 each. C: 2 tiles of 3 rows x 8 B (n < N: one run
    # per row) -> 3 x 16 each. Reads 16 + 96 = 112, writes 96 (byte-granular: 95 and 48).
    work = Contraction(1, 3, 16, 5, "int8", "int8", "int8")
    t = dram_traffic(work, Mapping("ws", 3, 8, 5, "mnk"), "int32", 16)
    assert (t.input_read, t.weight_read, t.output_write) == (16, 96, 96)
    kernel = Kernel("k", ("k",), work, Mapping("ws", 3, 8, 5, "mnk"))
    r = simulate(Schedule("g", "tiny", "pipelined", (kernel,)), arch_with(burst=16))
    assert (r.dram_read_bytes, r.dram_write_bytes) == (112, 96)


@pytest.mark.parametrize("double, tiles_paying", [(True, "first"), (False, "all")])
def test_sram_latency_is_paid_once_per_tile_fetch_hidden_by_double_buffering(double, tiles_paying):
    # a compute-bound GEMM in several tiles: with double buffering the chain is first load -> back-to-back computes
    # -> last store, so an SRAM latency L delays it by L (the first fetch); single-buffered every tile is a serial
    # load -> compute -> store, and each tile's fetch adds L
    L = 7
    g = gemm(64, 64, 64)       # the SRAM fast enough not to bound it (fills, feeds and drains over 1,024 B/cycle)
    runs = [run(g, arch_with(sram_latency=lat, bw=64, sram_bytes=12 << 10, double=double, sram_bw=1024),
                mapper="naive") for lat in (0, L)]
    tiles = runs[0].kernels[0].tiles
    assert tiles > 1
    assert runs[1].cycles - runs[0].cycles == (L if tiles_paying == "first" else tiles * L)
    assert runs[1].kernels[0].compute_cycles - runs[0].kernels[0].compute_cycles == runs[1].cycles - runs[0].cycles
    # SCALE-Sim timing keeps its assumption that buffers always keep up
    ss = [run(g, arch_with(sram_latency=lat, bw=64, sram_bytes=12 << 10, double=double), "scalesim", mapper="naive")
          for lat in (0, L)]
    assert ss[0].cycles == ss[1].cycles


def test_one_gemm_tile_with_its_weights_in_flash():
    # test_one_gemm_tile_that_fits with B (256 B) in flash at 2 B/cycle, latency 100: the flash read takes 128
    # cycles and lands at 228; the DRAM load then moves A and B (768 B) plus the staging write of B (256 B) at
    # 16 B/cycle: 64 cycles + 10 -> 302; compute 78 -> 380; store 512 B: 32 + 10 -> 422
    arch = arch_with(latency=10, flash={"bandwidth_bytes_per_cycle": 2, "latency_cycles": 100, "weights": "all"})
    r = run(gemm(32, 16, 16), arch, "pipelined", mapper="naive")
    assert r.cycles == 128 + 100 + 64 + 10 + 78 + 32 + 10
    assert r.flash_read_bytes == 256 and r.kernels[0].flash_read_bytes == 256
    assert (r.dram_read_bytes, r.dram_write_bytes) == (768, 512 + 256)          # staging write counted in DRAM
    assert r.energy_breakdown_pj["flash"] == 256 * 5.0
    assert r.memory_traffic["flash"] == {"read_bytes": 256, "write_bytes": 0,
                                         "bandwidth_utilization": pytest.approx(256 / 2 / r.cycles)}
    assert r.flash_utilization == pytest.approx(256 / 2 / r.cycles)
    assert r.kernels[0].stall_flash_cycles == 302 and r.engine_busy["flash"] == pytest.approx(128 / r.cycles)
    assert run(gemm(32, 16, 16), arch, reference=True, mapper="naive").to_dict() == r.to_dict()
    none = run(gemm(32, 16, 16), arch_with(latency=10, flash={"bandwidth_bytes_per_cycle": 2, "weights": "none"}),
               mapper="naive")
    assert none.cycles == 48 + 10 + 78 + 32 + 10 and none.flash_read_bytes == 0


def test_flash_staging_limit_and_placement_rules():
    # 5 tiles of 100 B from flash into a 250 B staging buffer: tile i may start once tile i - 3 has loaded
    assert list(staging_gate(np.array([100] * 5), 250)) == [-1, -1, 0, 1, 2]
    assert list(staging_gate(np.array([100, 0, 300, 100]), 250)) == [-1, -1, 1, 2]     # too big: alone
    assert list(staging_gate(np.array([100] * 3), None)) == [-1, -1, -1]
    assert weights_in_flash("layer3.mlp.up", "mlp") and not weights_in_flash("layer3.attn.q", "mlp")
    assert weights_in_flash("lm_head", "all") and not weights_in_flash("lm_head", "overflow")
    assert weights_in_flash("layer1.attn.q", "layer1.*") and not weights_in_flash("layer10.attn.q", "layer1.*")


def test_overflow_reads_the_same_share_of_every_weight_from_flash():
    arch = arch_with(flash={"bandwidth_bytes_per_cycle": 2, "weights": "overflow"})
    work = Contraction(1, 32, 64, 64, "int8", "int8", "int8")
    kernel = Kernel("k", ("k",), work, Mapping("ws", 32, 16, 64, "mnk"))        # 4 weight tiles of 1 KiB
    r = simulate(Schedule("g", "tiny", "pipelined", (kernel,)), arch, flash_share=0.25)
    assert r.flash_read_bytes == 1024 and r.kernels[0].dram_weight_read_bytes == 4096
    assert simulate(Schedule("g", "tiny", "pipelined", (kernel,)), arch).flash_read_bytes == 0   # 4 KiB fits DRAM


def test_weights_from_flash_behind_a_cache_stay_part_of_the_weight_loads():
    d = arch_to_dict(load_arch("h100"))                 # a hardware cache (L2) between HBM and the SMs
    d["memory"].insert(0, {"name": "ssd", "kind": "flash", "capacity_bytes": 2**40, "bandwidth_gb_s": 7.45,
                           "holds": ["weight"], "weights": "all"})
    d["energy"]["actions"]["ssd.read_byte"] = {"pj": 725.0, "source": "test"}
    arch = arch_from_dict(d)
    r = run(gemm(512, 1024, 1024), arch, mapper="naive")
    k = r.kernels[0]
    assert 0 < r.flash_read_bytes == k.flash_read_bytes == k.dram_weight_read_bytes    # all weights from flash


@pytest.mark.parametrize("table, reads", [((), 1), (((128, 2.0), (1024, 3.0)), 3), (((256, 1.5), (1024, 3.0)), 1.5),
                                          (((64, 2.0), (128, 4.0)), 4)])
def test_a_softmax_that_does_not_keep_rows_on_chip_reads_its_input_once_per_pass(table, reads):
    # vector.row_passes (eager PyTorch's softmax, by row length): the first entry whose up_to holds the 256-element
    # rows sets the reads of the input (rows longer than every entry take the last); none: one read
    d = tiny_arch_dict(bw=16)
    d["vector"]["row_passes"] = [{"up_to": u, "passes": p} for u, p in table]
    arch = arch_from_dict(d)
    b = GraphBuilder("softmax", "int8")
    x = b.input("x", (64, 256))
    alone = b.build(b.add("Softmax", [x], {"axis": -1}))
    r = run(alone, arch)
    assert r.dram_read_bytes == reads * 64 * 256 and r.dram_write_bytes == 64 * 256
    if not table:
        return
    # fused after a scale (--fusion full), the softmax's input never leaves the chip: one read of x in all
    b = GraphBuilder("scaled", "int8")
    x = b.input("x", (64, 256))
    y = b.add("Softmax", [b.add("Mul", [x, b.param("s", (1,))])], {"axis": -1})
    fused = simulate(lower(b.build(y), arch, CompileOptions(fusion="full")), arch)
    assert fused.dram_read_bytes == 64 * 256 + 1 and len(fused.kernels) == 1


@pytest.mark.parametrize("workload, arch_name", [("resnet18", "edge-npu"), ("gpt2", "tpu-v4"), ("attention", "h100")])
def test_measure_with_known_cycles_needs_no_pipeline_and_agrees_bit_for_bit(workload, arch_name, monkeypatch):
    # issue 22: pick's latency tie-break measured (cycles, pJ, DRAM bytes) with a whole simulation even where the
    # cycles were known (a sweep remembers them across points): energy and bytes read only the commands and the span
    arch = load_arch(arch_name)
    kernels = lower(load_workload(workload, dtype=arch.array.dtype), arch, CompileOptions(fusion="full")).kernels
    full = [sim.kernel_evaluator(arch, "pipelined").measure(k) for k in kernels]
    timed = sim.kernel_evaluator(arch, "pipelined")
    cycles = [timed(k) for k in kernels]
    timed.piped.clear()                                   # what it kept of those runs: not there in a sweep
    monkeypatch.setattr(sim, "_run_program", lambda *a, **k: pytest.fail("the pipeline ran"))
    assert [timed.measure(k) for k in kernels] == full
    other = sim.kernel_evaluator(arch, "pipelined", objective="energy")    # cycles handed in by the caller
    assert [other.measure(k, c) for k, c in zip(kernels, cycles, strict=True)] == full
