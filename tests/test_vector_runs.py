"""Vector kernels as runs (issue 22): the chunked step commands (floor_marks a chunk of tiles at a time) equal the
tile-by-tile construction (every slice, split_total, lockstep) tile for tile, and a vector kernel of millions of
tiles is built without an array per tile."""
from __future__ import annotations

import numpy as np
import pytest
from archs import tiny_arch_dict
from hypothesis import given, settings
from hypothesis import strategies as st

import tilesim.core.commands as commands
from tilesim.arch import arch_from_dict
from tilesim.arch.config import row_passes_for
from tilesim.compiler.cost import burst_bytes, extents
from tilesim.compiler.lowering import VectorWork
from tilesim.compiler.schedule import Kernel
from tilesim.compiler.tiling import VectorMapping
from tilesim.core.commands import TileCommands, as_runs, lockstep, split_total, vector_commands


def tile_by_tile_vector(work, kernel, arch):
    """The construction before issue 22's vector runs: every slice's bytes and cycles (split_total), then
    lockstep."""
    elems = extents(max(work.elements, 1), kernel.mapping.tile_elements).astype(np.float64)
    v = arch.vector
    total_cycles = -(-work.ops // (v.lanes * v.ops_per_lane_cycle * arch.cores))
    zeros = np.zeros(elems.shape[0], dtype=np.int64)
    read = work.read_bytes
    extra = row_passes_for(v.row_passes, work.row_elems) - 1 if work.row_bytes else 0.0
    read += round(min(work.row_bytes, read) * extra)
    burst = arch.offchip.burst_bytes
    cmds = TileCommands(burst_bytes(split_total(read, elems), 1, burst), zeros, zeros,
                        burst_bytes(split_total(work.write_bytes, elems), 1, burst),
                        split_total(total_cycles, elems), 1, 2 if arch.home("input").double_buffered else 1, zeros)
    p = min(arch.cores, elems.shape[0])
    return lockstep(cmds, p) if p > 1 else cmds


@st.composite
def vector_cases(draw):
    """Small vector work, a slice size and a tiny arch (1-7 cores, bursts, lanes)."""
    elements = draw(st.integers(1, 3000))
    work = VectorWork(elements, draw(st.integers(0, 10**7)), draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6)))
    d = tiny_arch_dict(vector_lanes=draw(st.sampled_from([1, 3, 16])))
    d["cores"] = draw(st.integers(1, 7))
    d["memory"][0]["burst_bytes"] = draw(st.sampled_from([1, 16, 64]))
    return work, Kernel("v", ("v",), work, VectorMapping(draw(st.integers(1, 400)))), arch_from_dict(d)


@settings(max_examples=150, deadline=None)
@given(vector_cases(), st.sampled_from([1, 5, 64, 1 << 18]))
def test_vector_step_runs_equal_the_tile_by_tile_commands(case, chunk):
    work, kernel, arch = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(commands, "ATTENTION_CHUNK_TILES", chunk)
        runs = vector_commands(work, kernel, arch)
    want = as_runs(tile_by_tile_vector(work, kernel, arch))
    for field in ("input_bytes", "weight_bytes", "psum_bytes", "store_bytes", "compute", "flash_bytes", "count"):
        np.testing.assert_array_equal(getattr(runs, field), getattr(want, field), err_msg=field)
    assert runs.slots == want.slots and runs.engine == want.engine


def test_long_vector_kernel_is_built_a_chunk_at_a_time():
    # 2**31 elements in slices of 64: 33.5 M tiles, built in chunks into a few runs; totals exact
    arch = arch_from_dict(tiny_arch_dict())
    work = VectorWork(2**31, 3 * 2**31, 2**32 + 7, 2**31 + 5)
    runs = vector_commands(work, Kernel("v", ("v",), work, VectorMapping(64)), arch)
    assert runs.tiles == 2**31 // 64 and runs.compute.shape[0] < 1000
    assert runs.total("input_bytes") >= work.read_bytes and runs.total("store_bytes") >= work.write_bytes
    lanes = arch.vector.lanes * arch.vector.ops_per_lane_cycle
    assert runs.total("compute") == -(-work.ops // lanes)
