"""Activations kept on chip between kernels (--fusion full with a level's resident_fraction)."""
from __future__ import annotations

import pytest
from archs import tiny_arch_dict

from tilesim import simulate
from tilesim.arch import InputError, arch_from_dict
from tilesim.compiler import GraphBuilder
from tilesim.compiler.fusion import group_ops
from tilesim.compiler.residency import keep_on_chip, resident_budget
from tilesim.compiler.schedule import CompileOptions, lower


def two_convs():
    b = GraphBuilder("chain")
    x = b.input("x", (1, 16, 28, 28))
    y = b.add("Relu", [b.conv(x, 16, 3, pad=1, name="c1")], name="r1")
    return b.build(b.conv(y, 16, 3, pad=1, name="c2"))


def arch(fraction):
    d = tiny_arch_dict(sram_bytes=1 << 20, bw=8, latency=10)
    d["memory"][1]["resident_fraction"] = fraction
    return arch_from_dict(d)


def run(graph, a, fusion="full"):
    return simulate(lower(graph, a, CompileOptions(fusion=fusion, mapper="naive")), a)


def test_a_kept_activation_skips_its_store_and_its_reload():
    g = two_convs()
    kept, plain = run(g, arch(0.5)), run(g, arch(0.0))
    act = 16 * 28 * 28                                           # c1's output, int8
    weights = 2 * 16 * 16 * 9
    assert plain.dram_write_bytes == 2 * act and kept.dram_write_bytes == act     # only the graph output
    assert kept.dram_read_bytes == act + weights                                  # the input and the weights
    assert plain.dram_read_bytes > kept.dram_read_bytes
    assert kept.cycles < plain.cycles
    assert kept.macs == plain.macs


def test_too_small_a_budget_keeps_nothing():
    g = two_convs()
    tiny = run(g, arch(0.01))                                   # ~10 KB: c1's 12.5 KB output does not fit
    assert tiny.dram_write_bytes == 2 * 16 * 28 * 28


def test_residency_is_part_of_full_fusion_only():
    g = two_convs()
    for policy in ("none", "epilogue"):
        assert run(g, arch(0.5), policy).dram_write_bytes == run(g, arch(0.0), policy).dram_write_bytes


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_resident_fraction_validation(bad):
    with pytest.raises(InputError, match="resident_fraction"):
        arch(bad)


@pytest.mark.parametrize("spare", [0, -1])
def test_the_budget_boundary_keeps_an_output_of_exactly_the_budget_and_not_one_byte_more(spare):
    # the boundary (sum of kept bytes + the output <= budget) was untested: a mutation to < passed (issue 21 item 11)
    g = two_convs()
    act = 16 * 28 * 28                                         # c1 + r1's output, int8: 12,544 bytes
    d = tiny_arch_dict(sram_bytes=4 * (act + spare), bw=8, latency=10)
    d["memory"][1]["resident_fraction"] = 0.25                 # resident_bytes = act + spare exactly
    a = arch_from_dict(d)
    assert resident_budget(a) == act + spare
    plan, held = keep_on_chip(list(group_ops(g, "full").kernels), g, a)
    kept = spare == 0
    assert [p.out for p in plan] == [kept, False] and held == [act if kept else 0] * 2     # live while c2 runs
    assert [p.a for p in plan] == [False, kept]                # c2 reads it from SRAM only when it was kept
    assert run(g, a).dram_write_bytes == act * (1 if kept else 2)
