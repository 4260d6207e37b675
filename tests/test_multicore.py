"""Several cores: kernels split along M or N, private and shared levels, one contended off-chip channel."""
from __future__ import annotations

from math import ceil

import pytest
from archs import tiny_arch_dict
from hypothesis import given, settings
from hypothesis import strategies as st

import tilesim.compiler.schedule as schedule
from tilesim import simulate
from tilesim.arch import InputError, arch_from_dict
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.schedule import CompileOptions, choose_split, core_blocks, core_shares, grid_passes, lower
from tilesim.workloads import gemm, load_workload


def cores_arch(cores, shared=False, bw=64, sram=256 << 10, dataflow="ws"):
    d = tiny_arch_dict(rows=8, cols=8, bw=bw, sram_bytes=sram, latency=10, dataflow=dataflow)
    d["cores"] = cores
    d["memory"][1]["shared"] = shared
    d["memory"][1]["bandwidth_bytes_per_cycle"] = 1024
    return arch_from_dict(d)


def run(graph, arch, mapper="search"):
    return simulate(lower(graph, arch, CompileOptions(mapper=mapper)), arch)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.integers(1, 200), st.integers(1, 5), st.booleans())
def test_cores_conserve_macs_and_respect_bounds(m, n, k, cores, shared):
    arch = cores_arch(cores, shared)
    r = run(gemm(m, n, k), arch)
    assert r.macs == m * n * k
    assert 0 < r.pe_utilization <= 1
    assert r.cycles >= ceil(m * n * k / arch.peak_macs_per_cycle)
    assert r.cycles >= (r.dram_read_bytes + r.dram_write_bytes) / arch.offchip.bandwidth_bytes_per_cycle
    assert r.dram_read_bytes >= m * k + k * n and r.dram_write_bytes >= m * n


def test_compute_bound_work_speeds_up_with_cores():
    g = gemm(1024, 256, 256)
    one, two, four = (run(g, cores_arch(c, bw=4096), "naive").cycles for c in (1, 2, 4))
    assert two <= 0.55 * one and four <= 0.3 * one


def test_a_shared_level_loads_a_duplicated_operand_once():
    # M splits across cores, so every core needs all of B: private buffers load it per core, a shared one once
    g = gemm(4096, 64, 64)
    private = run(g, cores_arch(4, shared=False), "naive")
    shared = run(g, cores_arch(4, shared=True), "naive")
    k = private.kernels[0]
    assert k.dram_input_read_bytes == shared.kernels[0].dram_input_read_bytes == 4096 * 64
    assert k.dram_weight_read_bytes == 4 * shared.kernels[0].dram_weight_read_bytes


def test_memory_bound_gemv_gains_nothing_from_cores():
    g = gemm(1, 4096, 1024)
    one, four = run(g, cores_arch(1, bw=8)), run(g, cores_arch(4, bw=8))
    assert four.cycles >= 0.95 * one.cycles
    assert four.mbu > 0.9


def test_split_choice_and_shares():
    conv_like = Contraction(1, 3136, 64, 576, "int8", "int8", "int8")
    gemv = Contraction(1, 1, 4096, 4096, "int8", "int8", "int8")
    assert choose_split(conv_like, 4) == "m" and choose_split(gemv, 4) == "n"
    shares = core_shares(Contraction(1, 10, 5, 3, "int8", "int8", "int8"), "m", 4)
    assert [(s.m, n) for s, n in shares] == [(3, 3), (1, 1)]          # 3 + 3 + 3 + 1 = 10 rows
    assert sum(s.macs * n for s, n in shares) == 10 * 5 * 3


def test_cores_validation():
    d = tiny_arch_dict()
    d["cores"] = 0
    with pytest.raises(InputError, match="cores: must be between 1 and 4096"):
        arch_from_dict(d)


def test_a_network_runs_on_several_cores():
    arch = cores_arch(2)
    r = run(load_workload("resnet18"), arch)
    assert r.macs == 1_814_073_344 and 0 < r.pe_utilization <= 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 12), st.integers(1, 12))
def test_grid_blocks_cover_the_outputs_exactly(m, n, pm, pn):
    work = Contraction(1, m, n, 7, "int8", "int8", "int8")
    blocks = core_blocks(work, f"{pm}x{pn}", pm * pn)
    assert sum(b.m * b.n * cm * cn for b, cm, cn in blocks) == m * n
    assert sum(cm for b, cm, cn in blocks if b.n == blocks[0][0].n) <= pm       # pieces along m
    assert sum(cn for b, cm, cn in blocks if b.m == blocks[0][0].m) <= pn       # pieces along n
    assert blocks[0][0].m == ceil(m / pm) and blocks[0][0].n == ceil(n / pn)   # the largest block first
    assert core_shares(work, f"{pm}x{pn}", pm * pn) == [(b, cm * cn) for b, cm, cn in blocks]


def test_a_grid_split_is_taken_when_a_1d_split_leaves_array_columns_idle():
    # OS 8x8 on 16 cores, 64^3: splitting m gives each core 4 rows (half the array's rows idle, 8 x 64 passes);
    # a 4 x 4 grid gives 16 x 16 blocks, 2 x 2 folds x 64 = 256 passes (2 x 8 ties on passes, loads more bytes)
    arch = cores_arch(16, dataflow="os")
    work = Contraction(1, 64, 64, 64, "int8", "int8", "int8")
    assert choose_split(work, 16) == "m" and grid_passes(work, (16, 1), arch.array) == 512
    assert choose_split(work, 16, arch.array) == "4x4" and grid_passes(work, (4, 4), arch.array) == 256
    sched = lower(gemm(64, 64, 64), arch, CompileOptions(mapper="naive"))
    assert sched.kernels[0].split == "4x4"
    assert simulate(sched, arch).kernels[0].mapping.endswith(" split=4x4")       # reported with the mapping
    # WS streams m through the array, so splitting m costs no passes and stays
    assert choose_split(work, 16, cores_arch(16).array) == "m"


@pytest.mark.parametrize("shared", [False, True])
def test_grid_split_loads_each_operand_once_per_piece_from_a_shared_level(shared):
    # 4 x 4 blocks: private buffers load A once per core (4 n pieces read each A row block) and B likewise;
    # a shared level loads every A and B tile once
    r = run(gemm(64, 64, 64), cores_arch(16, shared=shared, dataflow="os"), "naive")
    k = r.kernels[0]
    assert r.macs == 64 ** 3 and 0 < r.pe_utilization <= 1
    copies = 1 if shared else 4
    assert k.dram_input_read_bytes == copies * 64 * 64 and k.dram_weight_read_bytes == copies * 64 * 64
    assert k.dram_output_write_bytes == 64 * 64


def test_grid_split_runs_faster_than_the_1d_split_it_replaces(monkeypatch):
    arch = cores_arch(16, bw=4096, dataflow="os")
    grid = run(gemm(64, 64, 256), arch, "naive").cycles
    one_d = schedule.choose_split
    monkeypatch.setattr(schedule, "choose_split", lambda work, cores, array=None: one_d(work, cores))
    assert grid < 0.75 * run(gemm(64, 64, 256), arch, "naive").cycles
