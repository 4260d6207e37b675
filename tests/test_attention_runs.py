"""Attention kernels as runs (issue 22): the block search's closed-form cycles equal the per-tile sum, per-tile
cycles are exact floors of the shares' running sums, and the chunked step commands equal the tile-by-tile
construction (every tile worked out, split_total, lockstep) entry for entry."""
from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from archs import tiny_arch_dict
from hypothesis import given, settings
from hypothesis import strategies as st

import tilesim.core.commands as commands
from tilesim.arch import arch_from_dict, load_arch
from tilesim.compiler.attention import (
    AttentionMapping,
    AttentionWork,
    _block_cycles,
    attention_compute_cycles,
    attention_mapping,
    attention_tile_compute,
    attention_traffic,
)
from tilesim.compiler.cost import burst_bytes, extents
from tilesim.compiler.schedule import Kernel, lower
from tilesim.core.commands import (
    TileCommands,
    as_runs,
    attention_commands,
    attention_tiles,
    build_program,
    lockstep,
    repeat_groups,
    split_total,
)
from tilesim.core.simulate import simulate
from tilesim.workloads import load_workload


@st.composite
def attention_cases(draw):
    """A small attention, a block tiling of it and a tiny arch (1-5 cores, bursts, vector lanes, dataflow)."""
    work = AttentionWork(draw(st.integers(1, 5)), draw(st.integers(1, 40)), draw(st.integers(1, 40)),
                         draw(st.sampled_from([8, 16, 24])), draw(st.sampled_from([8, 16])), "int8",
                         score_ops=draw(st.integers(0, 3)))
    d = tiny_arch_dict(rows=8, cols=8, dataflow=draw(st.sampled_from(["os", "ws"])),
                       vector_lanes=draw(st.sampled_from([1, 3, 16, 1024])))
    d["cores"] = draw(st.integers(1, 5))
    d["memory"][0]["burst_bytes"] = draw(st.sampled_from([1, 16, 64]))
    mapping = AttentionMapping(d["array"]["dataflow"], draw(st.integers(1, 16)), draw(st.integers(1, 16)))
    return work, mapping, arch_from_dict(d), draw(st.sampled_from(["pipelined", "scalesim"]))


@settings(max_examples=150, deadline=None)
@given(attention_cases())
def test_attention_cycles_closed_form_equals_the_tiles_and_exact_floors(case):
    work, mapping, arch, timing = case
    tiles = attention_tile_compute(work, mapping, arch, timing)
    assert attention_compute_cycles(work, mapping, arch, timing) == int(tiles.sum())
    # tile t: floor(S_t) - floor(S_t-1) of the exact shares, + the fill on the first
    eq, ek, cost, fill = _block_cycles(work, mapping, arch, timing)
    shares = [cost[int(a), int(b)] for _ in range(work.g) for a in eq for b in ek]
    running, marks = Fraction(0), []
    for c in shares:
        running += c
        marks.append(floor(running))
    expected = np.diff(marks, prepend=0)
    expected[0] += fill
    np.testing.assert_array_equal(tiles, expected)


def tile_by_tile_attention(work, kernel, arch, timing):
    """The construction before issue 22's attention runs: every tile's bytes and cycles, then lockstep."""
    m = kernel.mapping
    eq, ek = extents(work.sq, m.block_q), extents(work.skv, m.block_kv)
    qi = np.tile(np.repeat(np.arange(eq.size), ek.size), work.g)
    ki = np.tile(np.arange(ek.size), work.g * eq.size)
    first, last = ki == 0, ki == ek.size - 1
    q_read, kv_read, o_write = attention_traffic(work, m.block_q)
    zeros = np.zeros(qi.shape[0], dtype=np.int64)
    burst = arch.offchip.burst_bytes
    levels = {arch.home(o).double_buffered for o in ("input", "weight", "output")}
    cmds = TileCommands(burst_bytes(split_total(q_read, np.where(first, eq[qi], 0).astype(np.float64)), 1, burst),
                        burst_bytes(split_total(kv_read, ek[ki].astype(np.float64)), 2, burst), zeros,
                        burst_bytes(split_total(o_write, np.where(last, eq[qi], 0).astype(np.float64)), 1, burst),
                        attention_tile_compute(work, m, arch, timing), 0, 2 if levels == {True} else 1, zeros)
    p = min(arch.cores, qi.shape[0])
    return lockstep(cmds, p) if p > 1 else cmds


@settings(max_examples=150, deadline=None)
@given(attention_cases(), st.sampled_from([1, 2, 7, 1 << 19]))
def test_attention_step_runs_equal_the_tile_by_tile_commands(case, chunk):
    work, mapping, arch, timing = case
    kernel = Kernel("attn", ("attn",), work, mapping)
    want = tile_by_tile_attention(work, kernel, arch, timing)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(commands, "ATTENTION_CHUNK_TILES", chunk)
        got = attention_tiles(work, kernel, arch, timing)
    assert got.count is not None and got.tiles == want.compute.shape[0]
    tiles = got.expanded()
    for field in ("input_bytes", "weight_bytes", "psum_bytes", "store_bytes", "compute", "flash_bytes"):
        np.testing.assert_array_equal(getattr(tiles, field), getattr(want, field), err_msg=field)
    assert got.compute.shape[0] == as_runs(want).compute.shape[0]     # as few runs as the steps allow


def test_long_attention_search_and_commands_do_not_build_every_tile():
    # llama3-8b prefill 64 x 4096 on h100 attends 2,048 heads of 4,096 x 4,096: its blocks (8.4 M tiles) were
    # refused by the 4 M tile bound; the closed form and the chunked steps take it
    h100 = load_arch("h100")
    work = AttentionWork(2048, 4096, 4096, 128, 128, "bf16", kv_share=4)
    m = attention_mapping(work, h100, "pipelined")
    assert m.tile_count(work) > 4_000_000
    cmds = attention_commands(work, Kernel("attn", ("attn",), work, m), h100, "pipelined")
    assert cmds.tiles == -(-m.tile_count(work) // h100.cores)
    assert cmds.total("compute") == attention_compute_cycles(work, m, h100, "pipelined")


def test_lockstep_attention_steps_repeat_as_a_group_and_simulate_exactly():
    # 3 cores over (head, q block, kv block) tiles: the steps' pattern repeats with the cores' phase in a q row; the
    # program holds it as one repeat group, and the compiled pipeline that jumps its repeats equals the Python
    # tile-by-tile reference on the whole result
    d = tiny_arch_dict(sram_bytes=48 << 10, latency=7)
    d["cores"] = 3
    arch = arch_from_dict(d)
    schedule = lower(load_workload("attention", seq_len=256, dtype=arch.array.dtype), arch)
    groups = repeat_groups(build_program(schedule, arch))
    assert groups.shape[0] >= 1 and (groups[:, 2] >= 3).all()
    assert simulate(schedule, arch).to_dict() == simulate(schedule, arch, reference=True).to_dict()


def test_attention_memo_is_bounded_and_returns_the_same_commands(monkeypatch):
    # the commands a power cap's clocks share are kept only up to ATTENTION_MEMO_ENTRIES entries in all
    arch = arch_from_dict(tiny_arch_dict(rows=8, cols=8))
    works = [AttentionWork(2, 16 * i, 24, 16, 16, "int8") for i in (1, 2, 3)]
    kernels = [Kernel("a", ("a",), w, AttentionMapping("ws", 8, 8)) for w in works]
    monkeypatch.setattr(commands, "_ATTENTION_MEMO", {})
    monkeypatch.setattr(commands, "ATTENTION_MEMO_ENTRIES", 20)
    for k in kernels:
        first = attention_commands(k.work, k, arch, "pipelined")
        again = attention_commands(k.work, k, arch, "pipelined")
        np.testing.assert_array_equal(first.compute, again.compute)
        assert sum(c.compute.shape[0] for c in commands._ATTENTION_MEMO.values()) <= 20
