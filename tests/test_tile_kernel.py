"""The compiled tile-command builder (sim/core/kernels/tiles.py) makes exactly the commands of its numpy reference
(sim/core/commands.py contraction_runs_reference), compiled and run as Python, over random loop nests, tilings,
holds, on-chip copies, fused epilogues, bursts and flash."""
from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_simulate import arch_with, tiled_contractions

from tilesim.compiler.cost import extents, extents_at
from tilesim.compiler.fusion import Epilogue
from tilesim.compiler.residency import Residency
from tilesim.compiler.schedule import Kernel
from tilesim.compiler.sparsity import WeightSparsity
from tilesim.core.commands import (
    TileCommands,
    as_runs,
    contraction_runs_compiled,
    contraction_runs_reference,
    nest_runs,
)
from tilesim.core.kernels.jit import interpreted
from tilesim.core.kernels.tiles import FIELDS, MACS, position_runs, split_table


def same(a: TileCommands, b: TileCommands) -> None:
    """Every field equal, arrays in value and dtype."""
    for f in fields(TileCommands):
        if f.name == "sums":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


@st.composite
def kernels(draw):
    """A contraction's kernel with a random tiling (tests/test_simulate.py), weights dense or pruned, operands
    served by on-chip copies or not, a fused epilogue or none."""
    work, mapping = draw(tiled_contractions())
    if draw(st.booleans()):
        work = replace(work, b_sparsity=draw(st.sampled_from([WeightSparsity(0.5, 2, 4), WeightSparsity(0.3)])))
    res = Residency(a=draw(st.booleans()), b=draw(st.booleans()), out=draw(st.booleans()),
                    extra_bytes=draw(st.integers(0, 64)))
    epilogue = Epilogue(draw(st.integers(1, 10**6)), draw(st.integers(0, 10**5))) if draw(st.booleans()) else None
    return Kernel("k", ("k",), work, mapping, epilogue=epilogue, residency=res)


@settings(max_examples=300, deadline=None)
@given(kernels(), st.sampled_from([1, 16, 64]), st.sampled_from([0.0, 1.0]), st.sampled_from(["pipelined", "scalesim"]))
def test_the_compiled_builder_makes_the_reference_commands(kernel, burst, share, timing):
    arch = arch_with(burst=burst)
    want = contraction_runs_reference(kernel.work, kernel, arch, timing, share)
    same(as_runs(want), want)                # runs already: kernel_runs does not merge them again
    same(contraction_runs_compiled(kernel.work, kernel, arch, timing, share), want)
    with interpreted():                      # the kernel's own Python: the same code, the same integers
        same(contraction_runs_compiled(kernel.work, kernel, arch, timing, share), want)


@settings(max_examples=100, deadline=None)
@given(kernels(), st.sampled_from([1, 16]))
def test_contraction_runs_take_the_reference_for_a_partial_flash_share(kernel, burst):
    # the flash bytes' total is rounded from a float share (Python's round): the reference alone does it
    arch = arch_with(burst=burst, flash={"bandwidth_bytes_per_cycle": 4, "latency_cycles": 10, "burst_bytes": 32})
    same(contraction_runs_compiled(kernel.work, kernel, arch, "pipelined", 0.3),
         contraction_runs_reference(kernel.work, kernel, arch, "pipelined", 0.3))
    same(contraction_runs_compiled(kernel.work, kernel, arch, "pipelined", 1.0),
         contraction_runs_reference(kernel.work, kernel, arch, "pipelined", 1.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=4))
def test_position_runs_are_nest_runs(trips):
    counts = [np.ones(t, dtype=np.int64) if t <= 2 else np.array([1, t - 2, 1]) for t in trips]
    ids, count = position_runs(np.array(trips, dtype=np.int64))
    want_ids, want_count = nest_runs(counts)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(count, want_count)


def test_a_split_that_could_pass_64_bits_is_left_to_the_reference():
    # total x weight >= 2**63: the kernel says so (the reference works it out in Python integers)
    table = np.zeros((FIELDS, 2), dtype=np.int64)
    table[MACS] = [3, 2**40]
    count = np.array([1, 5], dtype=np.int64)
    _, _, ok = split_table(table.copy(), count, 2**23, MACS, 0)
    assert not ok
    parts, new_count, ok = split_table(table.copy(), count, 2**22, MACS, 0)
    assert ok and int((parts[0] * new_count).sum()) == 2**22


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 500), st.integers(1, 500))
def test_extents_at_are_the_whole_loops_extents_there(size, tile):
    tile = min(tile, size)
    whole = extents(size, tile)
    at = np.arange(whole.shape[0])
    np.testing.assert_array_equal(extents_at(size, tile, at), whole)
