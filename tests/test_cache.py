"""A hardware cache level (kind: cache, e.g. a GPU's L2): cross-kernel hits, deduplicated core loads, kernel
start overhead, lockstep steps; exact byte counts on tiny cases."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from archs import tiny_arch_dict

from tilesim.arch import arch_from_dict, load_arch
from tilesim.arch.config import EnergyEntry
from tilesim.arch.errors import InputError
from tilesim.arch.power import at_clock
from tilesim.compiler.builder import GraphBuilder
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.residency import cache_traffic
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.commands import kernel_commands, lockstep
from tilesim.core.simulate import simulate
from tilesim.workloads import load_workload


def cached_arch(cache_bytes: int, cores: int = 1, **kw):
    """tiny arch with a cache level between DRAM and the SRAM."""
    d = tiny_arch_dict(**kw)
    d["cores"] = cores
    d["memory"].insert(1, {"name": "l2", "kind": "cache", "capacity_bytes": cache_bytes,
                           "bandwidth_bytes_per_cycle": 64, "holds": ["input", "weight", "output"]})
    for rw in ("read_byte", "write_byte"):
        d["energy"]["actions"][f"l2.{rw}"] = {"pj": 1.0, "source": "test"}
    return arch_from_dict(d)


def chain(rows: int, cols: int):
    """x -> Relu -> Sigmoid: the second kernel reads the first one's output (rows x cols int8)."""
    b = GraphBuilder("chain", "int8")
    x = b.input("x", (rows, cols))
    return b.build(b.add("Sigmoid", [b.add("Relu", [x])]))


def test_cache_hit_when_the_tensor_fits_miss_when_not():
    graph = chain(64, 64)                                  # 4096-byte intermediate
    for capacity, hit in ((8192, True), (4095, False)):
        arch = cached_arch(capacity)
        r = simulate(lower(graph, arch, CompileOptions(fusion="none")), arch)
        # x read once (cold), the intermediate read only on a miss; both outputs always written (write-back)
        assert r.dram_read_bytes == 4096 + (0 if hit else 4096)
        assert r.dram_write_bytes == 2 * 4096


def test_cache_counts_hits_as_cache_reads():
    graph = chain(64, 64)
    arch = cached_arch(8192)
    sched = lower(graph, arch, CompileOptions(fusion="none"))
    r = simulate(sched, arch)
    # reads through l2: 4096 (x, miss) + 4096 (hit); writes into l2: 4096 fill + 2 x 4096 stores
    assert r.energy_breakdown_pj["l2"] == pytest.approx(2 * 4096 + 3 * 4096)


def test_no_cache_means_no_hits():
    graph = chain(64, 64)
    arch = arch_from_dict(tiny_arch_dict())
    r = simulate(lower(graph, arch, CompileOptions(fusion="none")), arch)
    assert r.dram_read_bytes == 2 * 4096


def test_cache_deduplicates_lockstep_cores_and_never_adds_traffic():
    graph = load_workload("gemm:256,64,64", dtype="int8")
    plain = tiny_arch_dict(sram_bytes=1 << 16)
    plain["cores"] = 4
    without = arch_from_dict(plain)
    with_cache = cached_arch(1 << 20, cores=4, sram_bytes=1 << 16)
    r0 = simulate(lower(graph, without), without)
    r1 = simulate(lower(graph, with_cache), with_cache)
    assert r1.dram_read_bytes <= r0.dram_read_bytes
    # compulsory: A 256x64 and B 64x64 once each (the cache serves every core's copy of B after the first)
    assert r1.dram_read_bytes == 256 * 64 + 64 * 64
    assert r1.macs == r0.macs


def test_kernel_overhead_adds_its_cycles_to_a_streaming_kernel():
    graph = chain(64, 64)
    d = tiny_arch_dict()
    base = arch_from_dict(d)
    d["kernel_overhead_cycles"] = 1000
    slow = arch_from_dict(d)
    opts = CompileOptions(fusion="full")                   # one fused vector kernel
    s0, s1 = (simulate(lower(graph, a, opts), a) for a in (base, slow))
    assert len(s1.kernels) == 1
    assert s1.cycles == s0.cycles + 1000


def test_lockstep_keeps_totals_and_groups_steps():
    graph = chain(64, 64)
    arch = cached_arch(8192, cores=4)
    k = lower(graph, arch, CompileOptions(fusion="none")).kernels[0]
    cmds = kernel_commands(k, arch, "pipelined")
    grouped = lockstep(cmds, 3)
    assert grouped.compute.shape[0] == -(-cmds.compute.shape[0] // 3)
    for f in ("input_bytes", "weight_bytes", "psum_bytes", "store_bytes", "compute", "flash_bytes"):
        assert int(np.sum(getattr(grouped, f))) == int(np.sum(getattr(cmds, f)))


def test_cache_level_validation():
    d = tiny_arch_dict()
    d["memory"].insert(1, {"name": "l2", "kind": "cache", "capacity_bytes": 1024, "bandwidth_bytes_per_cycle": 8})
    d["memory"].insert(1, {"name": "l3", "kind": "cache", "capacity_bytes": 1024, "bandwidth_bytes_per_cycle": 8})
    with pytest.raises(InputError, match="at most one cache level"):
        arch_from_dict(d)
    d = tiny_arch_dict()
    d["kernel_overhead_cycles"] = -1
    with pytest.raises(InputError, match="kernel_overhead_cycles"):
        arch_from_dict(d)


def test_contraction_hit_counts_its_operand_once_as_a_cache_read():
    b = GraphBuilder("two_matmuls", "int8")
    x = b.input("x", (64, 64))
    y = b.add("MatMul", [x, b.param("w1", (64, 64))], name="mm1")
    graph = b.build(b.add("MatMul", [y, b.param("w2", (64, 64))], name="mm2"))
    arch = cached_arch(1 << 20)
    sched = lower(graph, arch, CompileOptions(fusion="none"))
    assert sched.kernels[1].residency.a and sched.kernels[1].residency.from_cache     # y hits
    assert not sched.kernels[1].residency.b                                           # w2: first use
    r = simulate(sched, arch)
    assert r.dram_read_bytes == 3 * 4096                  # x, w1, w2; y from the cache
    # l2 reads = DRAM reads + hits (y once), l2 writes = fills + stores; 1 pJ per byte
    assert r.energy_breakdown_pj["l2"] == pytest.approx(2 * r.dram_read_bytes + r.dram_write_bytes + 4096)


def test_the_caches_tiling_depends_on_neither_the_clock_nor_the_energy_table():
    """A power cap's slower clocks and a sweep's energy tables share the cache's whole-contraction tiling (computed
    once: the same object), and it is the one moving the fewest DRAM bytes of those the search ranks."""
    arch = load_arch("h100")
    work = Contraction(g=1, m=4096, n=5120, k=3072, a_dtype="bf16", b_dtype="bf16", c_dtype="bf16")
    traffic = cache_traffic(work, arch, "pipelined")
    assert traffic is not None
    assert cache_traffic(work, at_clock(arch, 1.2e9), "pipelined") is traffic
    read = EnergyEntry(arch.energy.actions["hbm.read_byte"].pj * 3, "a test's")
    dearer = replace(arch, energy=replace(arch.energy, actions={**arch.energy.actions, "hbm.read_byte": read}))
    assert cache_traffic(work, dearer, "pipelined") is traffic
    smaller = load_arch("h100", ["memory.l2.capacity_bytes=4MiB"])
    assert cache_traffic(work, smaller, "pipelined").read >= traffic.read
